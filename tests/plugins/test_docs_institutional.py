"""Every param of the nine institutional and frequency bots is documented in docs/bots-institutional.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from citarion_bots.arbitrage import ArbitrageBot
from citarion_bots.basket import BasketBot
from citarion_bots.hft import HftBot
from citarion_bots.lft import CrossoverBot
from citarion_bots.market.scenario import (
    BasketSpec,
    BookSpec,
    GapSpec,
    MarketSpec,
    OUSpec,
    PairSpec,
    PumpSpec,
    WalkSpec,
)
from citarion_bots.marketmaker import MarketMakerBot
from citarion_bots.mft import BreakoutBot
from citarion_bots.pairs import PairsBot
from citarion_bots.statarb import StatArbBot
from citarion_bots.transfer import TransferBot

DOCS = Path(__file__).resolve().parents[2] / "docs"
BOTS = [
    ArbitrageBot,
    PairsBot,
    StatArbBot,
    MarketMakerBot,
    BasketBot,
    TransferBot,
    HftBot,
    BreakoutBot,
    CrossoverBot,
]


@pytest.mark.parametrize("bot", BOTS, ids=lambda b: b.type_name)
def test_every_param_is_documented(bot: type) -> None:
    text = (DOCS / "bots-institutional.md").read_text(encoding="utf-8")
    assert f"`{bot.type_name}`" in text
    for key in bot.Params.model_fields:
        assert f"`{key}`" in text, f"{bot.type_name}: param {key!r} is not in docs/bots-institutional.md"


@pytest.mark.parametrize(
    "spec",
    [MarketSpec, WalkSpec, PairSpec, BasketSpec, OUSpec, GapSpec, BookSpec, PumpSpec],
    ids=lambda s: s.__name__,
)
def test_every_market_parameter_is_documented(spec: type) -> None:
    text = (DOCS / "market.md").read_text(encoding="utf-8")
    for key in spec.model_fields:
        assert f"`{key}`" in text, f"{spec.__name__}.{key} is not in docs/market.md"
