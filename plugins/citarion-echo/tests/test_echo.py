"""The example plugin's own tests: the ``bot_harness`` fixture comes from citarion-host's pytest plugin."""

from __future__ import annotations

import pytest
from citarion_echo import EchoBot

from citarion_host import PublishNotAllowedError

pytestmark = pytest.mark.asyncio  # works whatever the project's asyncio_mode


async def test_it_reports_the_counts_every_n_events(bot_harness) -> None:  # type: ignore[no-untyped-def]
    harness = await bot_harness(EchoBot, {"every": 2}, publish=["analytics.echo.>"], code="ORA")
    first = await harness.feed("analytics.ping.sent", {"n": 1})
    await harness.feed("analytics.ping.sent", {"n": 2})
    (report,) = harness.published
    assert report.topic == "analytics.echo.counted"
    assert report.payload == {"total": 2, "counts": {"analytics.ping.sent": 2}}
    assert report.causation_id != first.id  # caused by the second ping: lineage as on the host


async def test_the_harness_refuses_what_the_host_refuses(bot_harness) -> None:  # type: ignore[no-untyped-def]
    harness = await bot_harness(EchoBot, {"every": 1, "topic": "trading.order.submitted"},
                                publish=["analytics.echo.>"], code="ORA")  # fmt: skip
    with pytest.raises(PublishNotAllowedError, match=r"may not publish 'trading\.order\.submitted'"):
        await harness.feed("analytics.ping.sent", {"n": 1})
