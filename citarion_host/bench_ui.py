"""``bench --case ui``: what the dashboard costs the demo, with a real browser watching, and SSE fan-out.

Five variants of the demo (``configs/dev.toml``'s topology, the seeded replay, the memory bus, the
record on, as ``make demo``), in interleaved rounds:

* ``ui off``: as ``make demo`` runs;
* ``ui on, nobody watching``: the dashboard served, no browser: what the host itself pays for it
  (the feed, the rates sampler), apart from what a browser costs;
* ``ui on + browser (fleet)``: the dashboard served and headless Chromium (Debian's, driven by
  Playwright) on the fleet page, connected before the first bot starts; that page streams what its
  cards update live (the bots' lifecycle) and reads the rest over REST once a second;
* ``ui on + browser (tail)``: the same on the live tail, which streams every event;
* ``ui on + 20 SSE clients``: twenty streams of every event, read in this process (so their parsing
  is charged to the host too: a worse case than twenty browsers elsewhere).

Throughput is events over the time from the host's start to the feed's completion, the same for
every variant. Beside the host's own CPU per event: ``host_cores`` (its CPU over that time: 1.0 is a
whole core; less means it waited for a core, or for nothing) and ``browser_cpu_us_per_event`` (what
the processes this one started, Chromium and Playwright's driver, used meanwhile): on a 2-core
machine what the browser takes is what the replay cannot have. After the replay each stream must
have delivered every event of the run, exactly once and in order (the browser: the count the page
received; the clients: every id), else the round fails: losing events is not a slower result, it is
a wrong one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from .bench import BenchError, Figures, Table, median_figures, paired, ratio, rounds
from .bench_demo import DEMO_CONFIG, demo_config, process_cpu_seconds
from .host import Host
from .monitor import RunMonitor
from .settings import UiSettings

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "SSE_CLIENTS", "run_ui_bench"]

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
_CATCH_UP_S = 60.0


async def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"ui bench: timed out waiting for {what}")
        await asyncio.sleep(0.01)


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


def _children_cpu() -> dict[int, float]:
    """CPU seconds of each live process descending from this one (Chromium's, Playwright's driver)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    mine = {os.getpid()}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in mine and pid not in mine:
                mine.add(pid)
                changed = True
    found = {pid: process_cpu_seconds(pid) for pid in mine - {os.getpid()}}
    return {pid: cpu for pid, cpu in found.items() if cpu is not None}


def _children_cpu_since(before: dict[int, float]) -> float:
    """CPU the descendants used since ``before`` (a process that exited meanwhile: not counted)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in _children_cpu().items())


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
            if server is not None:
                wanted = _expected(server, variant)
                await _until(lambda: received() >= wanted, _CATCH_UP_S, "the streams to deliver every event")
            await host.stop()
            monitor.close()
            delivered = received()
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


#: What the fleet page streams (``FLEET_TOPICS`` in static/app.js): its cards are REST figures.
FLEET_TOPICS = ("system.bot.>",)


def _expected(server: Any, variant: str) -> int:
    """Events the watchers must each get: those their streams' patterns match."""
    from .ui.sse import TopicFilter

    if variant == "idle":
        return 0
    wanted = TopicFilter(FLEET_TOPICS if variant == "fleet" else (">",))
    return sum(n for (_, topic), n in server.dashboard.feed.counts.items() if wanted(topic))


@contextlib.asynccontextmanager
async def _watchers(server: Any, variant: str, browser: Any) -> AsyncIterator[Any]:
    """Serve, connect the browser or the clients, yield ``received()``: the fewest events any got."""
    if server is None:
        yield lambda: 0
        return
    await server.start()
    streams = server.dashboard.streams
    tasks: list[asyncio.Task[None]] = []
    page = None
    try:
        if variant == "idle":
            yield lambda: 0
        elif variant in ("fleet", "tail"):
            page = await browser.new_page()
            await page.goto(f"{server.url}#{variant}")
            await _until(lambda: len(streams.open) == 1, 20, "the browser's stream")
            counts = {"n": 0}

            async def poll() -> None:
                while True:
                    counts["n"] = await page.evaluate("window.citarion.received")
                    await asyncio.sleep(0.2)

            tasks.append(asyncio.create_task(poll()))
            yield lambda: counts["n"]
        else:
            lists: list[list[str]] = [[] for _ in range(SSE_CLIENTS)]
            tasks += [asyncio.create_task(_read_stream(server.url, ids)) for ids in lists]
            await _until(lambda: len(streams.open) == SSE_CLIENTS, 20, f"{SSE_CLIENTS} streams")

            def fewest() -> int:
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


async def run_ui_bench(path: Path = DEMO_CONFIG, rounds_: int = 3, chromium: str = CHROMIUM) -> list[Table]:
    """The demo with the dashboard off, on with a browser, on with 20 SSE clients; interleaved."""
    from playwright.async_api import async_playwright

    if not path.is_file():
        raise BenchError(f"{path}: no such config (the ui case needs a source checkout, or --config)")
    if not Path(chromium).is_file():
        raise BenchError(f"{chromium}: no chromium (make test installs Debian's chromium package)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True
        )
        try:
            results = await rounds(
                {
                    "ui off": lambda: ui_round(path, "off"),
                    "ui on, nobody watching": lambda: ui_round(path, "idle"),
                    "ui on + browser (fleet)": lambda: ui_round(path, "fleet", browser),
                    "ui on + browser (tail)": lambda: ui_round(path, "tail", browser),
                    f"ui on + {SSE_CLIENTS} SSE clients": lambda: ui_round(path, "clients"),
                },
                rounds_,
            )
        finally:
            await browser.close()
    clients = f"ui on + {SSE_CLIENTS} SSE clients"
    table = Table(
        f"ui: the {path.name} demo, dashboard off / on with a browser / on with {SSE_CLIENTS} SSE clients",
        "events/s from the host's start to the feed's completion (memory bus, record on); every stream"
        " must then have delivered every event its patterns match (streamed), exactly once (delivered_min:"
        " the fewest any stream got)",
        [
            "events",
            "events_per_s",
            "cpu_us_per_event",
            "host_cores",
            "browser_cpu_us_per_event",
            "streamed",
            "delivered_min",
            "lost",
            "spread_pct",
        ],
        [{"name": name, **median_figures(r)} for name, r in results.items()],
    )
    fleet, tail = "ui on + browser (fleet)", "ui on + browser (tail)"
    table.ratios = [
        ratio(f"{fleet} / ui off (events/s)", paired(results, fleet, "ui off"), at_least=0.9),
        # The host's own CPU per event: what the dashboard and a browser sharing its cores cost it,
        # whether or not other work on the machine took cores from it meanwhile (events/s above).
        ratio(
            "ui on, nobody watching / ui off (host CPU us/event)",
            paired(results, "ui on, nobody watching", "ui off", "cpu_us_per_event"),
        ),
        ratio(
            f"{fleet} / ui off (host CPU us/event)",
            paired(results, fleet, "ui off", "cpu_us_per_event"),
            at_most=1.1,
        ),
        ratio(f"{tail} / ui off (events/s)", paired(results, tail, "ui off")),
        ratio(f"{clients} / ui off (events/s)", paired(results, clients, "ui off")),
    ]
    for name in (fleet, tail, clients):
        for figures in results[name]:
            if figures["delivered_min"] < figures["streamed"] or figures["lost"]:
                raise BenchError(
                    f"ui bench: {name}: {figures['delivered_min']} of {figures['streamed']} delivered"
                )
    return [table]
