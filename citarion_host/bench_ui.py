"""``bench --case ui``: what the dashboard costs the demo, with a real browser watching, and SSE fan-out.

The demo (``configs/dev.toml``'s topology, the seeded replay, the memory bus, the record on, as
``make demo``) with the dashboard off, against each of:

* ``ui on, nobody watching``: the dashboard served, no browser: what the host itself pays for it
  (the feed, the rates sampler), apart from what a browser costs;
* ``ui on + browser (fleet), browser at idle CPU priority``: headless Chromium (Debian's, driven by
  Playwright) on the fleet page, connected before the first bot starts, running at the lowest CPU
  priority there is (``SCHED_IDLE``, through ``chrt --idle 0``). This is the stand-in for what the
  goal is about: an operator's browser runs on the operator's machine, not on the trading host's
  cores. So scheduled, the browser still does all its work (every event it streams is received,
  counted and checked) but only on a core nothing else wants, as on another machine. Why not
  ``nice -n 19``: Chromium run as root (as here) sets its own threads' nice values (0, and -8 for
  its I/O threads), undoing it; it leaves the scheduling policy alone, and every thread and process
  it starts inherits that;
* ``ui on + browser (fleet), browser at normal priority``: the same browser sharing the host's
  cores on equal terms: on a 2-core machine whose other core is busy, every timeslice Chromium's
  processes take is one the host's single thread waits for. Kept and labelled, not hidden;
* ``ui on + browser (tail), browser at idle CPU priority``: the live tail, which streams every event;
* ``ui on + 20 SSE clients``: twenty streams of every event, read in this process (so their parsing
  is charged to the host too: a worse case than twenty browsers elsewhere).

**Like with like.** Each variant runs as a pair with its own ``ui off`` run right next to it (off,
on, off, on..., which goes first alternating: :func:`~citarion_host.bench.paired_rounds`), so both
sides of a ratio see the same load from the rest of the machine; a ratio is the median over the
rounds of those per-pair ratios. Both browsers are launched before the first run and stay open
(idle, no page) through every run, the ``ui off`` ones included. Throughput is events over the time
from the host's start to the feed's completion, the same for every run. Beside it: the host
process's own CPU per event (what it paid, whoever else wanted the cores), ``host_cores`` (its CPU
over that time: 1.0 is a whole core; less means it waited for one) and ``browser_cpu_us_per_event``
(what the processes this one started, both Chromiums and Playwright's driver, used meanwhile). The
benchmark does not talk to the browser while the host runs (it reads the page's count once the feed
has completed), so the figures carry no cost of the measuring.

After the replay each stream must have delivered every event of the run its patterns match, exactly
once and in order (the browser: the count the page received; the clients: every id), else the run
fails: losing events is not a slower result, it is a wrong one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .bench import BenchError, Figures, Table, median_figures, paired_rounds, paired_with, ratio
from .bench_demo import DEMO_CONFIG, demo_config, process_cpu_seconds
from .host import Host
from .monitor import RunMonitor
from .settings import UiSettings

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "CLIENTS",
    "FLEET_LOW",
    "FLEET_SAME",
    "IDLE",
    "OFF",
    "SSE_CLIENTS",
    "TAIL_LOW",
    "run_ui_bench",
]

CHROMIUM = "/usr/bin/chromium"
#: As on these machines: root (no sandbox), no GPU, no background networking (the network is closed).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SSE_CLIENTS = 20
#: ``SCHED_IDLE`` in ``/proc/<pid>/stat`` (field 41, ``policy``): runs only when a core is idle.
SCHED_IDLE = 5
_CATCH_UP_S = 60.0

OFF = "ui off"
IDLE = "ui on, nobody watching"
FLEET_LOW = "ui on + browser (fleet), browser at idle CPU priority"
FLEET_SAME = "ui on + browser (fleet), browser at normal priority"
TAIL_LOW = "ui on + browser (tail), browser at idle CPU priority"
CLIENTS = f"ui on + {SSE_CLIENTS} SSE clients"

#: What the fleet page streams (``FLEET_TOPICS`` in static/app.js): its cards are REST figures.
FLEET_TOPICS = ("system.bot.>",)

Received = Callable[[], Awaitable[int]]


async def _until(condition: Received, wanted: int, timeout: float, what: str) -> int:
    deadline = time.monotonic() + timeout
    while (got := await condition()) < wanted:
        if time.monotonic() > deadline:
            raise BenchError(f"ui bench: timed out waiting for {what} ({got} of {wanted})")
        await asyncio.sleep(0.05)
    return got


async def _read_stream(url: str, ids: list[str]) -> None:
    import httpx
    from httpx_sse import aconnect_sse

    async with (
        httpx.AsyncClient(base_url=url, timeout=None) as client,
        aconnect_sse(client, "GET", "/events", headers={}) as source,
    ):
        async for sse in source.aiter_sse():
            if sse.data and sse.event == "message":
                ids.append(sse.json()["id"])
            elif sse.event == "gap":
                raise BenchError(f"ui bench: an SSE client lost events: {sse.data}")


def _descendants() -> dict[int, list[str]]:
    """The ``/proc/<pid>/stat`` fields (after the name) of each live process descending from this one."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    mine = {os.getpid()}
    changed = True
    while changed:
        changed = False
        for pid, fields in stats.items():
            if int(fields[1]) in mine and pid not in mine:
                mine.add(pid)
                changed = True
    return {pid: stats[pid] for pid in mine - {os.getpid()}}


def _children_cpu() -> dict[int, float]:
    """CPU seconds of each live descendant of this process (Chromium's, Playwright's driver)."""
    found = {pid: process_cpu_seconds(pid) for pid in _descendants()}
    return {pid: cpu for pid, cpu in found.items() if cpu is not None}


def _children_cpu_since(before: dict[int, float]) -> float:
    """CPU the descendants used since ``before`` (a process that exited meanwhile: not counted)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in _children_cpu().items())


def _policies() -> dict[str, int]:
    """How many descendant processes run under each scheduling policy (``stat`` field 41): shows
    that the wrapper took effect."""
    counts: dict[str, int] = {}
    for fields in _descendants().values():
        name = _POLICIES.get(int(fields[38]), fields[38])
        counts[name] = counts.get(name, 0) + 1
    return counts


_POLICIES = {0: "normal", 3: "batch", SCHED_IDLE: "idle"}


async def ui_round(path: Path, variant: str, browser: Any = None) -> Figures:
    """One demo run as ``variant`` (``off``, ``idle``, ``fleet``, ``tail``, ``clients``)."""
    from .ui import Dashboard, DashboardServer

    with tempfile.TemporaryDirectory(prefix="citarion-bench-") as tmp:
        loaded = demo_config(path, {"type": "memory"}, Path(tmp) / "events.jsonl")
        if variant != "off":
            ui = UiSettings(enabled=True, port=0, linger=False)
            loaded = replace(loaded, config=loaded.config.model_copy(update={"ui": ui}))
        host = Host(loaded)
        host.check(loaded)
        monitor = RunMonitor(Path(tmp) / "events.jsonl")
        host.observe(monitor)
        server = DashboardServer(Dashboard(host, loaded.config.ui)) if variant != "off" else None
        async with _watchers(server, variant, browser) as received:
            monitor.open()
            children = _children_cpu()
            cpu, wall = time.process_time(), time.perf_counter()
            await host.start()
            await host.finished.wait()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            browser_cpu = _children_cpu_since(children)
            await host.bus.settle()
            events = monitor.events
            wanted = _expected(server, variant) if server is not None else 0
            await _until(received, wanted, _CATCH_UP_S, "the streams to deliver every event")
            await host.stop()
            monitor.close()
            delivered = await received()  # again once stopped: a duplicate delivered late shows too
    figures: Figures = {
        "events": events,
        "events_per_s": events / wall,
        "cpu_us_per_event": cpu * 1e6 / events,
        "host_cores": round(cpu / wall, 2),
        "browser_cpu_us_per_event": round(browser_cpu * 1e6 / events, 1),
    }
    if server is not None:
        figures["streamed"] = wanted
        figures["delivered_min"] = delivered
        figures["lost"] = server.dashboard.feed.dropped
    return figures


def _expected(server: Any, variant: str) -> int:
    """Events the watchers must each get: those their streams' patterns match."""
    from .ui.sse import TopicFilter

    if variant == "idle":
        return 0
    wanted = TopicFilter(FLEET_TOPICS if variant == "fleet" else (">",))
    return sum(n for (_, topic), n in server.dashboard.feed.counts.items() if wanted(topic))


async def _nothing() -> int:
    return 0


@contextlib.asynccontextmanager
async def _watchers(server: Any, variant: str, browser: Any) -> AsyncIterator[Received]:
    """Serve, connect the browser or the clients, yield ``received()``: the fewest events any got."""
    if server is None:
        yield _nothing
        return
    await server.start()
    streams = server.dashboard.streams
    tasks: list[asyncio.Task[None]] = []
    page = None
    try:
        if variant == "idle":
            yield _nothing
        elif variant in ("fleet", "tail"):
            page = await browser.new_page()
            await page.goto(f"{server.url}#{variant}")
            await _until(_count(lambda: len(streams.open)), 1, 20, "the browser's stream")
            opened = page

            async def in_page() -> int:  # asked only once the feed has completed: nothing while it runs
                count: int = await opened.evaluate("window.citarion.received")
                return count

            yield in_page
        else:
            lists: list[list[str]] = [[] for _ in range(SSE_CLIENTS)]
            tasks += [asyncio.create_task(_read_stream(server.url, ids)) for ids in lists]
            await _until(_count(lambda: len(streams.open)), SSE_CLIENTS, 20, f"{SSE_CLIENTS} streams")

            async def fewest() -> int:
                for task in tasks:
                    if task.done() and task.exception() is not None:
                        raise BenchError(f"ui bench: an SSE client failed: {task.exception()!r}")
                first = lists[0]
                for ids in lists:  # every client the same events in the same order, none twice
                    if ids != first[: len(ids)] and first != ids[: len(first)]:
                        raise BenchError("ui bench: two SSE clients got different events")
                return min(len(ids) if len(set(ids)) == len(ids) else -1 for ids in lists)

            yield fewest
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if page is not None:
            await page.close()
        await server.stop()


def _count(read: Callable[[], int]) -> Received:
    async def counted() -> int:
        return read()

    return counted


@contextlib.asynccontextmanager
async def _browsers(playwright: Any, chromium: str) -> AsyncIterator[dict[str, Any]]:
    """Two Chromiums: one at normal priority, one started through ``chrt --idle 0`` (every thread of
    every process it starts inherits the policy; changing it after the launch would miss threads)."""
    with tempfile.TemporaryDirectory(prefix="citarion-bench-idle-") as tmp:
        wrapper = Path(tmp) / "chromium-idle"
        wrapper.write_text(f'#!/bin/sh\nexec chrt --idle 0 {chromium} "$@"\n')
        wrapper.chmod(0o755)
        launched: dict[str, Any] = {}
        try:
            for name, executable in (("same", chromium), ("low", str(wrapper))):
                launched[name] = await playwright.chromium.launch(
                    executable_path=executable, args=CHROMIUM_ARGS, headless=True
                )
            yield launched
        finally:
            for browser in launched.values():
                await browser.close()


async def run_ui_bench(path: Path = DEMO_CONFIG, rounds_: int = 3, chromium: str = CHROMIUM) -> list[Table]:
    """The demo with the dashboard off, each variant paired with its own ``ui off`` run."""
    from playwright.async_api import async_playwright

    if not path.is_file():
        raise BenchError(f"{path}: no such config (the ui case needs a source checkout, or --config)")
    if not Path(chromium).is_file():
        raise BenchError(f"{chromium}: no chromium (make test installs Debian's chromium package)")
    async with async_playwright() as playwright, _browsers(playwright, chromium) as browsers:
        policies = _policies()
        if not policies.get("idle"):
            raise BenchError(f"ui bench: no browser process runs at idle priority (chrt?): {policies}")
        base, pairs = await paired_rounds(
            lambda: ui_round(path, "off"),
            {
                IDLE: lambda: ui_round(path, "idle"),
                FLEET_LOW: lambda: ui_round(path, "fleet", browsers["low"]),
                FLEET_SAME: lambda: ui_round(path, "fleet", browsers["same"]),
                TAIL_LOW: lambda: ui_round(path, "tail", browsers["low"]),
                CLIENTS: lambda: ui_round(path, "clients"),
            },
            rounds_,
        )
    return [_table(path, base, pairs, policies)]


def _table(
    path: Path, base: list[Figures], pairs: dict[str, list[tuple[Figures, Figures]]], policies: dict[str, int]
) -> Table:
    rows = [{"name": OFF, **median_figures(base)}]
    for name, runs in pairs.items():
        rows.append(
            {
                "name": name,
                **median_figures([on for on, _ in runs]),
                "vs_off_events_per_s": round(paired_with(runs), 3),
                "vs_off_cpu_us_per_event": round(paired_with(runs, "cpu_us_per_event"), 3),
            }
        )
    table = Table(
        f"ui: the {path.name} demo, dashboard off / on with a browser / on with {SSE_CLIENTS} SSE clients",
        "events/s from the host's start to the feed's completion (memory bus, record on); each row run"
        " back to back with its own 'ui off' run (vs off: median of those paired ratios); every stream"
        " must then have delivered every event its patterns match (streamed), exactly once"
        " (delivered_min: the fewest any stream got)",
        [
            "events",
            "events_per_s",
            "cpu_us_per_event",
            "host_cores",
            "browser_cpu_us_per_event",
            "vs_off_events_per_s",
            "vs_off_cpu_us_per_event",
            "streamed",
            "delivered_min",
            "lost",
            "spread_pct",
        ],
        rows,
    )
    table.ratios = [
        # The goal (<= 10 % slower), measured like for like: the browser off the host's cores.
        ratio(f"{FLEET_LOW} / ui off (events/s)", paired_with(pairs[FLEET_LOW]), at_least=0.9),
        ratio(
            f"{FLEET_LOW} / ui off (host CPU us/event)",
            paired_with(pairs[FLEET_LOW], "cpu_us_per_event"),
            at_most=1.1,
        ),
        # The same browser competing for the host's cores on equal terms.
        ratio(f"{FLEET_SAME} / ui off (events/s)", paired_with(pairs[FLEET_SAME]), at_least=0.9),
        ratio(
            f"{FLEET_SAME} / ui off (host CPU us/event)",
            paired_with(pairs[FLEET_SAME], "cpu_us_per_event"),
            at_most=1.1,
        ),
        ratio(f"{IDLE} / ui off (host CPU us/event)", paired_with(pairs[IDLE], "cpu_us_per_event")),
        ratio(f"{TAIL_LOW} / ui off (events/s)", paired_with(pairs[TAIL_LOW])),
        ratio(f"{CLIENTS} / ui off (events/s)", paired_with(pairs[CLIENTS])),
    ]
    table.notes = [
        "processes started (browsers, Playwright's driver) by scheduling policy: "
        + ", ".join(f"{count} {name}" for name, count in sorted(policies.items())),
        "idle CPU priority (SCHED_IDLE): the browser gets only what the host leaves idle, a stand-in for"
        " the operator's browser on another machine; normal priority: it competes with the host for the"
        " same cores",
    ]
    for name in (FLEET_LOW, FLEET_SAME, TAIL_LOW, CLIENTS):
        for figures, _ in pairs[name]:
            if figures["delivered_min"] < figures["streamed"] or figures["lost"]:
                raise BenchError(
                    f"ui bench: {name}: {figures['delivered_min']} of {figures['streamed']} delivered"
                )
    return table
