"""Which assets a symbol trades: ``BTCUSDT`` with quote ``USDT`` -> base ``BTC``.

Multi-venue bots need it to read the exchange's per-asset balances (``Balance.asset``): buying spends
the quote asset on one venue, selling spends the base asset on another.
"""

from __future__ import annotations

__all__ = ["base_asset"]


def base_asset(symbol: str, quote: str) -> str:
    """The base asset of ``symbol`` quoted in ``quote`` (the symbol itself if it does not end in it)."""
    return symbol[: -len(quote)] if quote and symbol.endswith(quote) and symbol != quote else symbol
