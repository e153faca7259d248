"""PAR on its events: the planted hedge ratio, entries/exits/stops on known z-scores, no trade on
unrelated random walks."""

from __future__ import annotations

import numpy as np
import pytest
from citarion_bots.market.paths import cointegrated_pair, random_walk
from citarion_bots.pairs import PairsBot

from citarion_host.testing import BotHarness

from .desk_helpers import T0, Venue, bar, feed_bar, submitted

PUBLISH = ["trading.signal.>", "trading.order.>"]
Y, X = "BCHUSDT", "LTCUSDT"


def pairs(**params: object) -> BotHarness:
    return BotHarness(PairsBot, {"lookback": 300, **params}, bot_id="spectrum", code="PAR", publish=PUBLISH)


async def feed_pair(
    h: BotHarness, ys: list[float], xs: list[float], start: int = 0, venue: Venue | None = None
) -> None:
    for i, (y, x) in enumerate(zip(ys, xs, strict=True)):
        await feed_bar(h, bar(float(y), start + i, symbol=Y))
        await feed_bar(h, bar(float(x), start + i, symbol=X))
        if venue is not None:
            await venue.answer(price=float(y))  # the test's fills: price does not matter here


def planted(seed: int = 3, n: int = 300) -> tuple[list[float], list[float]]:
    path = cointegrated_pair(np.random.default_rng(seed), n, beta=2.0, alpha=10.0)
    return list(path.y), list(path.x)


async def test_the_planted_beta_is_recovered_from_the_bars() -> None:
    h = pairs(trade=False)
    await feed_pair(h, *planted())
    stats = h.bot.stats()
    assert abs(stats["beta"] - 2.0) < 0.05 and stats["pvalue"] < 0.01, stats


async def test_entries_exits_and_stops_on_known_z_scores() -> None:
    h = pairs(refit_every=10_000, confirm_fits=1, order_quote=210.0)  # one fit, at bar 300
    venue = Venue(h)
    ys, xs = planted()
    await feed_pair(h, ys, xs, venue=venue)
    fit = h.bot.model.fit  # type: ignore[attr-defined]
    assert fit is not None and submitted(h) == []
    x = 100.0
    line = fit.alpha + fit.beta * x

    async def at(z: float, i: int) -> None:
        await feed_pair(h, [line + z * fit.resid_std], [x], start=i, venue=venue)

    await at(3.0, 300)  # rich spread: short it
    (sell_y, buy_x) = submitted(h)
    assert (sell_y.symbol, sell_y.side, buy_x.symbol, buy_x.side) == (Y, "SELL", X, "BUY")
    y_qty = round(210.0 / (line + 3.0 * fit.resid_std), 8)
    assert sell_y.quantity == y_qty and buy_x.quantity == pytest.approx(fit.beta * y_qty, abs=1e-8)
    signals = h.payloads("trading.signal")
    assert [(s.symbol, s.direction) for s in signals] == [(Y, "SHORT"), (X, "LONG")]
    assert signals[0].confidence == pytest.approx(0.5 + 0.5 * (3.0 - 2.0) / 2.0, abs=1e-4)
    assert all(e.metadata == {"botId": "spectrum", "dataTime": T0 + 300 * 60_000} for e in h.published[:2])
    await at(1.0, 301)  # still outside the exit band
    assert len(submitted(h)) == 2
    await at(0.2, 302)  # back: both legs closed at market
    exits = submitted(h)[2:]
    assert {(o.symbol, o.side, o.type) for o in exits} == {(Y, "BUY", "MARKET"), (X, "SELL", "MARKET")}
    assert h.bot.position[("binance", Y)] == 0 and h.bot.position[("binance", X)] == 0  # type: ignore[attr-defined]
    await at(5.0, 303)  # beyond the stop: never entered
    await at(-2.5, 304)  # cheap spread: long it
    assert [(o.symbol, o.side) for o in submitted(h)[4:]] == [(Y, "BUY"), (X, "SELL")]
    await at(-4.5, 305)  # ran away: stop
    await at(-2.5, 306)  # locked out after the stop
    await at(-0.3, 307)  # back inside the exit band: unlocked
    await at(-2.2, 308)  # a new entry
    sides = [(o.symbol, o.side) for o in submitted(h)[6:]]
    assert sides == [(Y, "SELL"), (X, "BUY"), (Y, "BUY"), (X, "SELL")]
    assert h.bot.stats()["stops"] == 1 and h.bot.stats()["exits"] == 1


def walks(seed: int, n: int = 800) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    return list(random_walk(rng, n, start=210.0, sigma=2.0)), list(
        random_walk(rng, n, start=100.0, sigma=1.0)
    )


async def test_two_independent_random_walks_give_no_trade() -> None:
    h = pairs()
    await feed_pair(h, *walks(1))
    assert h.published == [] and h.bot.model.fits == 26  # type: ignore[attr-defined]


async def test_unrelated_walks_rarely_pass_the_confirmed_gate() -> None:
    # 26 refits per run are 26 tests: one pass at 1 % would trade ~20 % of unrelated pairs; two in a
    # row, measured, ~3 %
    traded = 0
    for seed in range(20):
        h = pairs()
        await feed_pair(h, *walks(seed))
        traded += bool(h.published)
    assert traded <= 2, traded


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="exit_z < entry_z < stop_z"):
        PairsBot.Params.model_validate({"entry_z": 5.0})
    with pytest.raises(ValueError, match="different"):
        PairsBot.Params.model_validate({"x": "A", "y": "A"})
