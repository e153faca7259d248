"""TRF on its events: the issue's 70/20/10 known answer as transfer requests, waiting for every
venue, nothing while a transfer is in flight, fees that outweigh the benefit."""

from __future__ import annotations

import msgspec
import pytest
from citarion_bots.transfer import TransferBot

from citarion_host.payloads import Transfer
from citarion_host.testing import BotHarness

from .desk_helpers import feed, feed_balance

PUBLISH = ["trading.order.transfer.requested"]
VENUES = ["A", "B", "C"]


def trf(**params: object) -> BotHarness:
    defaults = {"exchanges": VENUES, "fee_flat": 0.0, "min_amount": 0.0, "band": 0.1}
    return BotHarness(TransferBot, {**defaults, **params}, bot_id="kron", code="TRF", publish=PUBLISH)


def requests(h: BotHarness) -> list[Transfer]:
    return h.payloads("trading.order.transfer.requested")


async def balances(h: BotHarness, a: float, b: float, c: float) -> None:
    for venue, amount in zip(VENUES, (a, b, c), strict=True):
        await feed_balance(h, venue, "USDT", amount)


async def test_70_20_10_with_equal_targets() -> None:
    h = trf()
    await feed_balance(h, "A", "USDT", 70.0)
    await feed_balance(h, "B", "USDT", 20.0)
    assert requests(h) == [] and h.bot.stats()["waitingForBalances"] == 2  # C not reported yet
    await feed_balance(h, "C", "USDT", 10.0)
    moves = [(t.from_exchange, t.to_exchange, t.amount) for t in requests(h)]
    assert moves == [("A", "C", 23.33), ("A", "B", 13.33)]
    first, second = requests(h)
    assert first.status == "REQUESTED" and first.bot_id == "kron" and first.asset == "USDT"
    assert first.transfer_id != second.transfer_id and first.transfer_id.startswith("kron-")
    assert all(e.metadata["botId"] == "kron" and "dataTime" in e.metadata for e in h.published)


async def test_nothing_more_while_in_flight_then_balanced_after_settlement() -> None:
    h = trf()
    await balances(h, 70.0, 20.0, 10.0)
    first, second = requests(h)
    await feed_balance(h, "A", "USDT", 46.67)  # the exchange debits A: TRF must not plan again yet
    assert len(requests(h)) == 2
    for transfer in (first, second):
        await feed(
            h,
            "trading.order.transfer.pending",
            msgspec.structs.replace(transfer, status="PENDING"),
            source="EXC",
        )
    await balances(h, 33.34, 33.33, 33.33)
    assert len(requests(h)) == 2
    for transfer in (first, second):
        await feed(
            h,
            "trading.order.transfer.settled",
            msgspec.structs.replace(transfer, status="SETTLED"),
            source="EXC",
        )
    assert (
        len(requests(h)) == 2
        and h.bot.stats()["settled"] == 2
        and h.bot.stats()["moved"] == pytest.approx(36.66)
    )


async def test_within_the_band_and_fees_above_the_benefit() -> None:
    h = trf(band=0.05)
    await balances(h, 36.0, 33.0, 31.0)
    assert requests(h) == []
    h = trf(fee_flat=1.0, fee_rate=0.001, benefit_rate=0.05)
    await balances(h, 70.0, 20.0, 10.0)
    assert [(t.from_exchange, t.to_exchange, t.amount) for t in requests(h)] == [("A", "C", 23.33)]
    assert requests(h)[0].fee == pytest.approx(1.02333)


async def test_a_rejected_transfer_frees_the_asset_and_available_funds_cap_the_amount() -> None:
    h = trf()
    await feed_balance(h, "B", "USDT", 20.0)
    await feed_balance(h, "C", "USDT", 10.0)
    balance = msgspec.structs.replace(
        h.bot.balances.get(("B", "USDT")),
        exchange="A",
        total=70.0,
        available=30.0,  # type: ignore[arg-type, attr-defined]
    )
    await feed(h, "trading.position.balance.A", balance, source="EXC")
    assert [(t.from_exchange, t.to_exchange, t.amount) for t in requests(h)] == [
        ("A", "C", 23.33),
        ("A", "B", 6.67),
    ]
    rejected = msgspec.structs.replace(requests(h)[1], status="REJECTED", reason="insufficient available")
    await feed(h, "trading.order.transfer.rejected", rejected, source="EXC")
    assert h.bot.stats()["rejected"] == 1 and h.bot.stats()["inFlight"] == 1


async def test_another_accounts_balances() -> None:
    h = trf(account="orion")
    await balances(h, 70.0, 20.0, 10.0)  # kron's own: ignored
    assert requests(h) == []
    for venue, amount in zip(VENUES, (70.0, 20.0, 10.0), strict=True):
        await feed_balance(h, venue, "USDT", amount, bot_id="orion")
    assert {t.bot_id for t in requests(h)} == {"orion"} and len(requests(h)) == 2


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="targets must name exactly"):
        TransferBot.Params.model_validate({"exchanges": ["A", "B"], "targets": {"A": 1.0}})
