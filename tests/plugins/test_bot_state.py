"""Every first-party bot keeps its state across a restart: run over its real inbox from the demo
topologies, it publishes, reports and ends in the same state whether or not it was restarted from its
snapshot along the way (``state_check``; docs/state.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from citarion_host.settings import load_config

from .state_check import PAPER, PLATFORM, RecordedRun, assert_continues_exactly, record_run

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
