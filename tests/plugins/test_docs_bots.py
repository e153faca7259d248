"""Every param of the first-party bots outside docs/bots-institutional.md is documented: the paper-trading
bots in docs/bots.md, ORA in docs/oracle.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from citarion_bots.bollinger import BollingerBot
from citarion_bots.dca import DcaBot
from citarion_bots.exchange import PaperExchange
from citarion_bots.forecast import ForecastBot
from citarion_bots.grid import GridBot
from citarion_bots.logos import LogosBot
from citarion_bots.lumi import LumiCsvBot, LumiMarketBot, LumiSyntheticBot
from citarion_bots.oracle.bot import OracleBot
from citarion_bots.pump import PumpBot
from citarion_bots.range import RangeBot
from citarion_bots.risk import RiskGuard
from citarion_bots.wolf import WolfBot

from citarion_host.bot import Bot

DOCS = Path(__file__).resolve().parents[2] / "docs"
BOTS_MD: list[type[Bot]] = [
    PaperExchange, LumiSyntheticBot, LumiCsvBot, LumiMarketBot, GridBot, DcaBot, BollingerBot, RangeBot,
    PumpBot, ForecastBot, LogosBot, RiskGuard, WolfBot,
]  # fmt: skip


@pytest.mark.parametrize("bot", BOTS_MD, ids=lambda b: b.type_name)
def test_every_param_is_in_bots_md(bot: type[Bot]) -> None:
    text = (DOCS / "bots.md").read_text(encoding="utf-8") + (DOCS / "market.md").read_text(encoding="utf-8")
    assert f"`{bot.type_name}`" in text
    for key in bot.Params.model_fields:
        assert f"`{key}`" in text, (
            f"{bot.type_name}: param {key!r} is in neither docs/bots.md nor docs/market.md"
        )


def test_every_param_of_ora_is_in_oracle_md() -> None:
    text = (DOCS / "oracle.md").read_text(encoding="utf-8")
    for key in OracleBot.Params.model_fields:
        assert f"`{key}`" in text, key
