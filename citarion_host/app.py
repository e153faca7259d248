"""``citarion-host run``: a host, its monitor, the reloader and signal handling, wired together.

Shutdown on SIGINT/SIGTERM (or when every ``[host] stop_on`` publisher has reported): stop intake,
drain every backlog, stop the bots, close the bus, print the summary, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

from .host import Host
from .monitor import RunMonitor, format_summary
from .plugins import Plugins
from .reload import ConfigReloader
from .settings import LoadedConfig
from .topology import Placement

__all__ = ["run_host"]

log = logging.getLogger("citarion_host.app")


async def run_host(
    loaded: LoadedConfig,
    *,
    reload: bool | None = None,
    out: TextIO | None = None,
    plugins: Plugins | None = None,
    handle_signals: bool = True,
    stop: asyncio.Event | None = None,
    summary_json: Path | None = None,
    placement: Placement | None = None,
) -> dict[str, Any]:
    """Run until a signal, ``stop`` is set, or ``stop_on`` completes. Returns the run summary.

    ``placement``: run only part of the topology (``--only/--except``); the rest runs on other hosts.
    """
    out = out or sys.stdout
    settings = loaded.config.host
    host = Host(loaded, plugins=plugins, placement=placement)
    host.check(loaded)  # refuse before opening anything
    stop = stop or asyncio.Event()
    record = Path(settings.record) if settings.record else None
    monitor = RunMonitor(record)
    host.observe(monitor)  # attached to the bus before the bots start, so the record misses nothing
    monitor.open()
    if handle_signals:
        _install_signal_handlers(stop)
    tasks: list[asyncio.Task[Any]] = []
    try:
        await host.start()
        if reload if reload is not None else settings.reload:
            tasks.append(asyncio.create_task(ConfigReloader(host).run(stop), name="reloader"))
        if settings.progress_interval_s > 0:
            tasks.append(asyncio.create_task(_progress(monitor, settings.progress_interval_s, out, stop)))
        finished = asyncio.create_task(host.finished.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finished.cancel()
        stopped.cancel()
        log.info("stopping", extra={"reason": "stop_on reached" if host.finished.is_set() else "signal"})
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        await host.stop()
        monitor.close()
        if handle_signals:
            _remove_signal_handlers()
    summary = monitor.summary(host.final_stats)
    summary["record"] = str(record) if record else None
    if settings.summary:
        print(format_summary(summary), file=out)
        if record:
            print(f"events recorded to {record}", file=out)
    if summary_json is not None:
        summary_json.write_text(json.dumps(summary, indent=2))
    return summary


async def _progress(monitor: RunMonitor, interval: float, out: TextIO, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        print(monitor.progress_line(), file=out, flush=True)


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


def _remove_signal_handlers() -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)
