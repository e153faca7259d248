"""ARB arithmetic: the issue's known answer, and sizes limited by depth, balances and the cap."""

from __future__ import annotations

import pytest
from citarion_bots.quant.arbitrage import floor_lot, net_edge, plan


def test_the_known_answer_trades_at_0_1_pct_and_not_at_0_3_pct() -> None:
    assert net_edge(100.0, 100.5, 0.001, 0.001) == pytest.approx(0.2995, abs=1e-12)
    found = plan([(100.0, 1.0)], [(100.5, 2.0)], buy_fee=0.001, sell_fee=0.001)
    assert found is not None
    assert found.quantity == 1.0  # the ask's depth, not the bid's 2
    assert found.edge_per_unit == pytest.approx(0.2995, abs=1e-12)
    assert (found.buy_limit, found.sell_limit) == (100.0, 100.5)
    assert net_edge(100.0, 100.5, 0.003, 0.003) == pytest.approx(-0.1015, abs=1e-12)
    assert plan([(100.0, 1.0)], [(100.5, 2.0)], buy_fee=0.003, sell_fee=0.003) is None


def test_walks_both_books_while_the_marginal_edge_holds() -> None:
    asks = [(100.0, 1.0), (100.2, 1.0), (100.4, 5.0)]
    bids = [(100.5, 0.5), (100.45, 2.0), (100.0, 9.0)]
    # fee-free: units 1..0.5 earn 0.5, 0.5..1 earn 0.45, then 100.2 vs 100.45 earns 0.25 for 1 unit,
    # then 100.4 vs 100.45 earns 0.05 for the bid's last 0.5; the next bid (100.0) loses
    found = plan(asks, bids, buy_fee=0.0, sell_fee=0.0)
    assert found is not None and found.quantity == pytest.approx(2.5)
    assert found.net_profit == pytest.approx(0.5 * 0.5 + 0.5 * 0.45 + 1.0 * 0.25 + 0.5 * 0.05)
    assert (found.buy_limit, found.sell_limit) == (100.4, 100.45)
    # a threshold of 0.1 per unit stops before the 0.05 slice
    strict = plan(asks, bids, buy_fee=0.0, sell_fee=0.0, min_edge=0.1)
    assert strict is not None and strict.quantity == pytest.approx(2.0)


def test_balances_and_the_cap_limit_the_size() -> None:
    asks, bids = [(100.0, 10.0)], [(101.0, 10.0)]
    by_quote = plan(asks, bids, buy_fee=0.001, sell_fee=0.001, quote_available=500.5)
    assert by_quote is not None and by_quote.quantity == pytest.approx(5.0)  # 500.5 / (100 * 1.001)
    assert by_quote.buy_cost * 1.001 <= 500.5 + 1e-9
    by_base = plan(asks, bids, buy_fee=0.001, sell_fee=0.001, base_available=0.3)
    assert by_base is not None and by_base.quantity == pytest.approx(0.3)
    capped = plan(asks, bids, buy_fee=0.001, sell_fee=0.001, max_quantity=2.0, base_available=3.0)
    assert capped is not None and capped.quantity == 2.0
    assert plan(asks, bids, buy_fee=0.001, sell_fee=0.001, quote_available=0.0) is None
    assert plan([], bids, buy_fee=0.0, sell_fee=0.0) is None


def test_quantities_are_floored_to_the_lot() -> None:
    assert floor_lot(0.123456789) == pytest.approx(0.12345678)
    assert floor_lot(0.3 / 0.1) == pytest.approx(3.0)  # binary noise does not lose a lot
    found = plan([(3.0, 10.0)], [(3.1, 10.0)], buy_fee=0.0, sell_fee=0.0, quote_available=1.0)
    assert found is not None and found.quantity == pytest.approx(0.33333333)
    assert found.buy_cost <= 1.0
