"""Every first-party bot keeps its state across a restart: run over its real inbox from the demo
topologies, it publishes, reports and ends in the same state whether or not it was restarted from its
snapshot along the way (``state_check``; docs/state.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from citarion_host.plugins import Plugins
from citarion_host.settings import load_config

from .state_check import PAPER, PLATFORM, RecordedRun, assert_continues_exactly, feed_through, record_run

FEEDS = {"lumi-synthetic", "lumi-csv", "lumi-market"}


def bot_ids(path: object) -> list[str]:
    config = load_config(path).config  # type: ignore[arg-type]
    return [bot.id for bot in config.bots if bot.plugin not in FEEDS]


@pytest.fixture(scope="session")
def paper_run() -> Iterator[RecordedRun]:
    yield asyncio.run(record_run(PAPER))


@pytest.fixture(scope="session")
def platform_run() -> Iterator[RecordedRun]:
    yield asyncio.run(record_run(PLATFORM))


@pytest.mark.parametrize("bot_id", bot_ids(PAPER))
async def test_a_paper_demo_bot_continues_exactly_after_a_restart(
    paper_run: RecordedRun, bot_id: str
) -> None:
    await assert_continues_exactly(paper_run, bot_id)


@pytest.mark.parametrize("bot_id", bot_ids(PLATFORM))
async def test_a_platform_bot_continues_exactly_after_a_restart(
    platform_run: RecordedRun, bot_id: str
) -> None:
    await assert_continues_exactly(platform_run, bot_id)


def feed_params(path: object, plugin: str) -> dict[str, object]:
    config = load_config(path).config  # type: ignore[arg-type]
    return dict(next(bot.params for bot in config.bots if bot.plugin == plugin))


@pytest.mark.parametrize(
    ("plugin", "params"),
    [
        ("lumi-synthetic", {**feed_params(PAPER, "lumi-synthetic"), "bars": 120}),
        ("lumi-synthetic", {"bars": 60, "emit_trades": True, "emit_orderbook": True, "pumps": []}),
        ("lumi-csv", {}),
        ("lumi-market", feed_params(PLATFORM, "lumi-market")),
    ],
    ids=["synthetic-paper", "synthetic-trades-books", "csv", "market-platform"],
)
async def test_a_feed_resumes_after_the_last_event_its_state_covers(
    plugin: str, params: dict[str, object]
) -> None:
    """Stopped anywhere (between bars or inside one) and restarted from its snapshot, a feed publishes
    exactly the rest of its replay: not from bar 0, nothing twice, nothing skipped."""
    bot_type = Plugins.discover().bot_types()[plugin]
    straight = await feed_through(bot_type, params)
    count = len(straight.outputs)
    assert count > 100
    cuts = [5, count // 3 + 1, 2 * count // 3 + 2]
    restarted = await feed_through(bot_type, params, cuts)
    assert restarted.restarts == 3
    assert len(restarted.outputs) == count
    for index, (got, want) in enumerate(zip(restarted.outputs, straight.outputs, strict=True)):
        assert got == want, f"{plugin}: event {index} differs after a restart"
    assert restarted.stats == straight.stats
    assert restarted.state == straight.state
