"""A real host with a small publishing bot, for the benchmarks of "a bot's own publish".

Why a real host and not ``bus.publish``: what a user's bot pays is ``ctx.publish`` (the publish
guard, event building, the host's bookkeeping, and whatever the host does with the bus), so that is
what the per-event cases measure. Nothing here reaches into the host: the bot is registered like any
plugin, started by :class:`~citarion_host.host.Host`, and publishes from a task it spawns through its
context, as a data feed does. When the host's publish path changes, these figures follow it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from .bench import SIGNAL, TOPIC, BenchError, Figures, Stopwatch, paced
from .bot import Bot
from .host import Host
from .plugins import Plugins
from .settings import parse_config

__all__ = ["BenchPublisher", "bench_host"]

BOT_ID = "bench-publisher"


class BenchPublisher(Bot):
    """Publishes signals through ``ctx.publish`` when the benchmark asks (as fast as it can, or paced)."""

    type_name = "bench-publisher"
    description = "benchmark bot: publishes signals on request (citarion-host bench)"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        topic: str = TOPIC

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self.sent: list[int] = []

    async def burst(self, count: int) -> Figures:
        """Publish ``count`` events one after the other from a spawned task; events/s of the calls."""
        return await self.ctx.spawn(self._burst(count), name="burst")  # type: ignore[no-any-return]

    async def _burst(self, count: int) -> Figures:
        publish, topic = self.ctx.publish, self.params.topic
        watch = Stopwatch()
        for _ in range(count):
            await publish(topic, SIGNAL)
        return watch.figures(count)

    async def paced(self, count: int, rate: float) -> Figures:
        """Publish ``count`` events at ``rate``/s from a spawned task, stamping each send in ``sent``."""
        self.sent = []
        publish, topic = self.ctx.publish, self.params.topic

        async def send() -> None:
            await publish(topic, SIGNAL)

        return await self.ctx.spawn(paced(send, rate, count, self.sent), name="paced")  # type: ignore[no-any-return]


@asynccontextmanager
async def bench_host(
    backend: dict[str, Any], *, code: str = "GRD"
) -> AsyncIterator[tuple[Host, BenchPublisher]]:
    """A started host with one :class:`BenchPublisher` (registry code ``code``) on ``backend``."""
    data = {
        "host": {"name": "citarion-bench", "summary": False, "progress_interval_s": 0},
        "backend": backend,
        "bots": [
            {"id": BOT_ID, "code": code, "plugin": BenchPublisher.type_name, "publish": ["trading.signal.>"]}
        ],
    }
    plugins = Plugins()
    plugins.register(BenchPublisher, name="citarion-bench")
    host = Host(parse_config(data, Path("<citarion-host bench>")), plugins=plugins)
    quiet = _NoReceiverExpected()
    host_log = logging.getLogger("citarion_host.host")
    host_log.addFilter(quiet)
    try:
        async with host:
            bot = host.runners[BOT_ID].bot
            if not isinstance(bot, BenchPublisher):
                raise BenchError(f"the benchmark bot did not start (state {host.runners[BOT_ID].state})")
            yield host, bot
    finally:
        host_log.removeFilter(quiet)


class _NoReceiverExpected(logging.Filter):
    """The bench receives the bot's events itself (or only counts what the server stored), so the wiring
    check's "nobody receives" warning about the benchmark bot is expected: drop that one."""

    def filter(self, record: logging.LogRecord) -> bool:
        finding = str(getattr(record, "finding", ""))
        return not (BOT_ID in finding and "nobody receives" in finding)
