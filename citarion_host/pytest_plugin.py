"""A pytest plugin for bot authors (entry point ``pytest11``): the ``bot_harness`` fixture.

Installed with citarion-host, so a plugin package's tests just use it::

    async def test_echo_counts(bot_harness):
        harness = await bot_harness(EchoBot, {"every": 2}, publish=["analytics.echo.>"], code="ORA")
        await harness.feed("market.ticker.updated.binance.BTCUSDT", ticker)
        ...

Async tests need pytest-asyncio (``asyncio_mode = "auto"``, or ``@pytest.mark.asyncio`` on each test).
The harness builds the bot with its validated params and the same context rules as the host (the
declared publish patterns are enforced with the host's message, lineage is stamped the same way),
starts it, and stops it when the test ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import pytest

try:  # an async fixture works in pytest-asyncio's strict mode too (its default)
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - without pytest-asyncio no async test runs anyway
    _async_fixture = pytest.fixture  # type: ignore[assignment]

from .bot import Bot
from .testing import BotHarness

__all__ = ["bot_harness"]

MakeHarness = Callable[..., Awaitable[BotHarness]]


@_async_fixture
async def bot_harness() -> AsyncIterator[MakeHarness]:
    """A factory: ``await bot_harness(BotType, params, publish=[...], code="GRD", bot_id="x")`` gives a
    started :class:`~citarion_host.testing.BotHarness`; every one made is stopped at teardown."""
    made: list[BotHarness] = []

    async def make(
        bot_type: type[Bot],
        params: Mapping[str, Any] | None = None,
        *,
        publish: Iterable[str] = (">",),
        code: str = "TST",
        bot_id: str = "test-bot",
    ) -> BotHarness:
        harness = BotHarness(bot_type, params, bot_id=bot_id, code=code, publish=publish)
        await harness.start()
        made.append(harness)
        return harness

    yield make
    for harness in reversed(made):
        await harness.stop()
