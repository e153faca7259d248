"""``citarion-host run``: a host, its monitor, the reloader and signal handling, wired together.

Shutdown on SIGINT/SIGTERM (or when every ``[host] stop_on`` publisher has reported): stop intake,
drain every backlog, stop the bots, close the bus, print the summary, exit 0. The shutdown is bounded
(``[host] stop_timeout_s`` per bot, ``shutdown_timeout_s`` in all) and a second signal exits at once
(``signals.py``). A host that cannot go on (its bus's connection closed for good: ``Host.lost``)
stops the same way, then :func:`run_host` raises :class:`~citarion_host.errors.BusError`, so the
command exits 1 instead of idling with its bots shown "running".

With the dashboard on (``[ui] enabled``, ``--ui``), its port is taken before anything starts, its URL
printed, and when the feed completes the host keeps running and serving (``[ui] linger``) until
interrupted, so the final state can be inspected and the controls still work. What the terminal
shows while it runs, and the summary, are ``terminal.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .errors import BusError
from .host import Host
from .monitor import RecordError, RunMonitor
from .pacing import pace_feeds
from .plugins import Plugins
from .reload import ConfigReloader
from .settings import LoadedConfig
from .signals import ShutdownSignals
from .terminal import print_summary, run_progress
from .topology import Placement

if TYPE_CHECKING:
    from .ui import DashboardServer

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
    speed: float | None = None,
) -> dict[str, Any]:
    """Run until a signal, ``stop`` is set, or ``stop_on`` completes (with the dashboard lingering:
    until a signal or ``stop``). ``placement``: run only part of the topology (``--only/--except``);
    the rest runs on other hosts. ``speed``: pace the feeds (``pacing.py``; turns reload off, since a
    reload would read the file's pace back). Returns the run summary."""
    out = out or sys.stdout
    settings = loaded.config.host
    host = Host(loaded, plugins=plugins, placement=placement)
    if speed is not None:
        host.loaded = loaded = pace_feeds(loaded, speed, host.plugins)
        if reload if reload is not None else settings.reload:  # asked for: say why it is not done
            log.warning(
                "config reload is off while --speed paces the feeds"
                " (a reload would read the file's pace back)",
                extra={"speed": speed},
            )
        reload = False
    host.check(loaded)  # refuse before opening anything
    server = _dashboard(host, loaded)  # its port taken now: a clear error before anything starts
    stop = stop or asyncio.Event()
    record = Path(settings.record) if settings.record else None
    monitor = RunMonitor(record)
    host.observe(monitor)  # attached to the bus before the bots start, so the record misses nothing
    try:
        monitor.open()
    except RecordError as exc:
        if server is not None:
            await server.stop()  # its port was taken: given back
        raise RecordError(f"{loaded.path}: {exc}") from None
    signals = None
    if handle_signals:
        signals = ShutdownSignals(stop, shutdown_timeout_s=settings.shutdown_timeout_s)
        signals.install()
    tasks: list[asyncio.Task[Any]] = []
    try:
        if server is not None:
            await server.start()
            print(f"dashboard: {server.url}{_token_hint(loaded)}", file=out, flush=True)
        await host.start()
        if reload if reload is not None else settings.reload:
            tasks.append(asyncio.create_task(ConfigReloader(host).run(stop), name="reloader"))
        if settings.progress_interval_s > 0:
            tasks.append(
                asyncio.create_task(run_progress(monitor, host, settings.progress_interval_s, out, stop))
            )
        await _first(host.finished, stop, host.lost)
        if server is not None and loaded.config.ui.linger and not stop.is_set() and not host.lost.is_set():
            log.info("feed completed; the dashboard keeps serving", extra={"url": server.url})
            print(f"feed completed; dashboard still at {server.url} (Ctrl-C to stop)", file=out, flush=True)
            await stop.wait()
        log.info("stopping", extra={"reason": _why(host, stop)})
    finally:
        stop.set()
        if signals is not None:
            signals.arm()  # the shutdown is bounded however the run ended
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        await host.stop()
        if server is not None:
            await server.stop()
        monitor.close()
        if signals is not None:
            signals.remove()
    summary = monitor.summary(host.final_stats)
    summary["record"] = str(record) if record else None
    summary["record_error"] = monitor.record_error
    summary["unrecorded"] = monitor.unrecorded
    incomplete = (
        f"the record {str(record)!r} is incomplete ({monitor.record_error}): it holds the run's first"
        f" {monitor.recorded:,} events, {monitor.unrecorded:,} are missing"
    )
    if settings.summary:
        print_summary(summary, out)
        if record and monitor.record_error is None:  # else the error below says what it holds
            print(f"events recorded to {record}", file=out)
    if summary_json is not None:
        try:
            summary_json.write_text(json.dumps(summary, indent=2))
        except OSError as exc:  # the run is done: say which output failed, not only errno's words
            raise RecordError(f"--summary-json {summary_json}: cannot write: {exc.strerror or exc}") from None
    if host.lost_reason is not None:
        raise BusError(f"{host.lost_reason}; the host stopped")
    if monitor.record_error is not None:  # what the run was asked to keep is not all there: exit 1
        raise RecordError(f"{loaded.path}: [host] record: {incomplete}")
    return summary


def _why(host: Host, stop: asyncio.Event) -> str:
    if host.lost_reason is not None:
        return host.lost_reason
    return "stop_on reached" if host.finished.is_set() else "signal" if stop.is_set() else "?"


async def _first(*events: asyncio.Event) -> None:
    """Until one of ``events`` is set (the feed completed, a stop was asked, the host is lost)."""
    waiting = {asyncio.create_task(event.wait()) for event in events}
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiting:
            task.cancel()


def _dashboard(host: Host, loaded: LoadedConfig) -> DashboardServer | None:
    """The dashboard's server with its port bound, when ``[ui] enabled``."""
    if not loaded.config.ui.enabled:
        return None
    from .ui import Dashboard, DashboardServer

    server = DashboardServer(Dashboard(host, loaded.config.ui))
    server.bind()
    return server


def _token_hint(loaded: LoadedConfig) -> str:
    return " (add ?token=<[ui] token> once; the page keeps it in a cookie)" if loaded.config.ui.token else ""
