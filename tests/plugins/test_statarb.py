"""STA on its events: planted theta recovered, entries at k equilibrium sigmas, a random walk's gate
stays closed."""

from __future__ import annotations

import numpy as np
import pytest
from citarion_bots.market.paths import ou_path, random_walk
from citarion_bots.statarb import StatArbBot

from citarion_host.testing import BotHarness

from .desk_helpers import Venue, bar, feed_bar, submitted

PUBLISH = ["trading.signal.>", "trading.order.>"]
KEY = ("binance", "XRPUSDT")


def sta(**params: object) -> BotHarness:
    return BotHarness(StatArbBot, params, bot_id="reed", code="STA", publish=PUBLISH)


async def feed_closes(h: BotHarness, closes: list[float], start: int = 0, venue: Venue | None = None) -> None:
    for i, close in enumerate(closes):
        await feed_bar(h, bar(float(close), start + i, symbol="XRPUSDT"))
        if venue is not None:
            await venue.answer(price=float(close))


async def test_the_planted_theta_is_recovered_within_15_pct() -> None:
    h = sta(trade=False, lookback=4000, confirm_fits=1)
    await feed_closes(h, list(ou_path(np.random.default_rng(1), 4000, mu=50.0, theta=0.2, sigma=1.0)))
    fit = h.bot.stats()["fits"]["binance:XRPUSDT"]
    assert abs(fit["theta"] - 0.2) / 0.2 < 0.15 and fit["gateOpen"], fit


async def test_entries_at_k_equilibrium_sigmas() -> None:
    h = sta(lookback=300, refit_every=10_000, confirm_fits=1, order_quote=100.0)
    venue = Venue(h)
    await feed_closes(
        h, list(ou_path(np.random.default_rng(2), 300, mu=50.0, theta=0.2, sigma=1.0)), venue=venue
    )
    fit = h.bot.series[KEY].model.fit  # type: ignore[attr-defined]
    assert fit is not None and h.published == []

    def at(k: float) -> float:
        return fit.mu + k * fit.sigma_eq

    await feed_closes(h, [at(-2.5)], start=300, venue=venue)
    (buy,) = submitted(h)
    assert (buy.side, buy.type, buy.quantity) == ("BUY", "MARKET", round(100.0 / at(-2.5), 8))
    (signal,) = h.payloads("trading.signal")
    assert signal.direction == "LONG" and signal.take_profit == pytest.approx(fit.mu)
    assert signal.stop_loss == pytest.approx(at(-4.0)) and signal.confidence == pytest.approx(0.625, abs=1e-4)
    await feed_closes(h, [at(-1.0)], start=301, venue=venue)
    assert len(submitted(h)) == 1
    await feed_closes(h, [at(-0.3)], start=302, venue=venue)  # within exit_k: sold
    assert submitted(h)[-1].side == "SELL" and h.bot.position[KEY] == 0  # type: ignore[attr-defined]
    await feed_closes(h, [at(2.6)], start=303, venue=venue)  # rich: a SHORT view, no order (spot)
    assert h.payloads("trading.signal")[-1].direction == "SHORT" and len(submitted(h)) == 2


async def test_shorts_with_allow_short() -> None:
    h = sta(lookback=300, refit_every=10_000, confirm_fits=1, allow_short=True)
    await feed_closes(
        h, list(ou_path(np.random.default_rng(2), 300, mu=50.0, theta=0.2, sigma=1.0)), venue=Venue(h)
    )
    fit = h.bot.series[KEY].model.fit  # type: ignore[attr-defined]
    await feed_closes(h, [fit.mu + 2.5 * fit.sigma_eq], start=300)
    assert [o.side for o in submitted(h)] == ["SELL"]


async def test_a_random_walk_keeps_the_gate_closed() -> None:
    h = sta()
    await feed_closes(h, list(random_walk(np.random.default_rng(1), 800, start=50.0, sigma=0.5)))
    fit = h.bot.stats()["fits"]["binance:XRPUSDT"]
    assert h.published == [] and not fit["gateOpen"] and fit["adfPvalue"] > 0.01, fit


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="exit_k < entry_k < stop_k"):
        StatArbBot.Params.model_validate({"exit_k": 3.0})
