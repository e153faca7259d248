"""``citarion-host bench``: which cases exist, running a selection of them, the report.

A case is a function from the run's options (and the NATS server's URL when it needs one) to a list of
:class:`~citarion_host.bench.Table`. Cases that need NATS share one private ``nats-server`` started
here (free ports, a temporary store, stopped by PID): never a server already running on the machine.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import loops
from .bench import Ratio, Table, format_table, machine
from .bench_demo import DEMO_CONFIG, run_demo
from .bench_fleet import run_fleet_bench
from .bench_hosts import run_hosts
from .bench_latency import RATES, run_latency
from .bench_loop import run_loops
from .bench_memory import run_memory
from .bench_nats import run_core, run_jetstream
from .bench_slow import slow_subscriber_tables
from .bench_state import run_state_bench
from .natsserver import NatsServer

__all__ = ["CASES", "BenchOptions", "Case", "format_machine", "run_bench"]


@dataclass
class BenchOptions:
    """Sizes and knobs of a run (the CLI's flags); the defaults take a few minutes on 2 cores."""

    rounds: int = 3
    events: int = 200_000  # memory one-to-one
    fanout_events: int = 50_000
    slow_events: int = 1_000_000  # the slow-subscriber case (each variant in its own process)
    core_events: int = 100_000
    jetstream_events: int = 10_000  # per-event publishes; the batch case publishes twice as many
    latency_seconds: float = 1.0  # per rate, per path, per round
    bots: int = 1_000  # fleet
    state_events: int = 20_000  # the state case on memory (JetStream: jetstream_events)
    rates: tuple[int, ...] = RATES
    loop: loops.EventLoopChoice = "auto"
    config: Path = field(default_factory=lambda: DEMO_CONFIG)


@dataclass(frozen=True)
class Case:
    """One ``--case``: what it measures and how to run it."""

    help: str
    nats: bool
    run: Callable[[BenchOptions, NatsServer | None], list[Table]]


def _memory(options: BenchOptions, server: NatsServer | None) -> list[Table]:
    return loops.run(run_memory(options.events, options.fanout_events, options.rounds), options.loop)


def _slow(options: BenchOptions, server: NatsServer | None) -> list[Table]:
    return slow_subscriber_tables(options.slow_events, options.loop)


def _core(options: BenchOptions, server: NatsServer | None) -> list[Table]:
    assert server is not None
    return loops.run(run_core(server.url, options.core_events, options.rounds), options.loop)


def _jetstream(options: BenchOptions, server: NatsServer | None) -> list[Table]:
    assert server is not None
    return loops.run(run_jetstream(server.url, options.jetstream_events, options.rounds), options.loop)


def _latency(options: BenchOptions, server: NatsServer | None) -> list[Table]:
    assert server is not None
    coro = run_latency(server.url, options.rates, options.latency_seconds, options.rounds)
    return loops.run(coro, options.loop)


def _demo(options: BenchOptions, server: NatsServer | None) -> list[Table]:
    assert server is not None
    coro = run_demo(server.url, options.config, options.rounds, server.pid, server.monitor)
    return loops.run(coro, options.loop)


def _loop(options: BenchOptions, server: NatsServer | None) -> list[Table]:
    assert server is not None
    return run_loops(
        server.url, options.core_events, options.latency_seconds, options.rounds, options.config, server.pid
    )


def _state(options: BenchOptions, server: NatsServer | None) -> list[Table]:
    assert server is not None
    coro = run_state_bench(
        server.url, options.state_events, options.jetstream_events, options.rounds, options.config
    )
    return loops.run(coro, options.loop)


def _ui(options: BenchOptions, server: NatsServer | None) -> list[Table]:
    from .bench_ui import run_ui_bench  # Playwright and the dashboard: only for this case

    return loops.run(run_ui_bench(options.config, options.rounds), options.loop)


def _fleet(options: BenchOptions, server: NatsServer | None) -> list[Table]:
    figures = loops.run(run_fleet_bench(options.bots), options.loop)
    steps = [key for key in figures if key.endswith("_s")]
    start, reload = figures["check_and_start_s"], figures["reload_rewired_apply_s"]
    table = Table(
        title=f"fleet: {figures['bots']:,} bots, {figures['patterns']:,} patterns, memory bus",
        compares="each step once: load, check, host start (check included), a one-bot reload, stop",
        columns=["seconds"],
        rows=[{"name": step.removesuffix("_s"), "seconds": figures[step]} for step in steps],
        ratios=[
            Ratio("check and start (s)", start, "<= 2 s", start <= 2.0),
            Ratio("reload of one bot, apply (s)", reload, "<= 0.2 s", reload <= 0.2),
        ],
        notes=list(figures["problems"]),
    )
    return [table]


def _hosts(options: BenchOptions, server: NatsServer | None) -> list[Table]:
    return loops.run(run_hosts(options.rounds), options.loop)


CASES: dict[str, Case] = {
    "memory": Case(
        "memory bus one-to-one and fan-out (fresh topics too), against direct calls", False, _memory
    ),
    "slow-subscriber": Case(
        "one slow subscriber, mixed priorities: peak RSS bounded vs unbounded, none urgent lost, drops exact",
        False,
        _slow,
    ),
    "core": Case("core NATS: bus vs raw nats-py with the same codec work vs raw bytes", True, _core),
    "jetstream": Case(
        "JetStream publish: a bot's ctx.publish vs raw nats-py; batch vs batch", True, _jetstream
    ),
    "latency": Case(
        "p50/p99/max at fixed rates: memory, core NATS, JetStream, TCP echo floor", True, _latency
    ),
    "demo": Case("the demo topology on memory and JetStream: events/s, CPU us per event", True, _demo),
    "loop": Case("asyncio's event loop vs uvloop: core NATS and the demo", True, _loop),
    "hosts": Case("the platform split across 1, 2 and 3 host processes on a 3-node cluster", False, _hosts),
    "fleet": Case("1,000-bot fleet: check, start and a one-bot reload (--bots)", False, _fleet),
    "state": Case(
        "bot state: cost per event on memory and JetStream KV, the demo with state on vs off", True, _state
    ),
    "ui": Case("the demo with the dashboard off / on with a browser / on with 20 SSE clients", False, _ui),
}


def run_bench(
    cases: list[str], options: BenchOptions, *, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run ``cases`` in order; the machine's description, every table, the load average after."""
    unknown = [name for name in cases if name not in CASES]
    if unknown:
        raise ValueError(f"unknown bench case(s) {unknown}; known: {', '.join(CASES)}")
    loop = "uvloop" if loops.loop_factory(options.loop) is not None else "asyncio"
    result: dict[str, Any] = {"machine": machine(loop), "cases": {}}
    server = NatsServer() if any(CASES[name].nats for name in cases) else None
    try:
        if server is not None:
            server.start()
            result["machine"]["nats_server"] = server.url
        if progress is not None:
            progress(format_machine(result["machine"]))
        for name in cases:
            tables = CASES[name].run(options, server)
            result["cases"][name] = [table.to_dict() for table in tables]
            if progress is not None:
                progress("\n\n".join(format_table(table) for table in tables))
    finally:
        if server is not None:
            server.close()
    with contextlib.suppress(OSError):  # no load average off Linux/macOS
        result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def format_machine(info: dict[str, Any]) -> str:
    """One line describing the machine and the software (the tables follow as each case finishes)."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    return (
        f"{info['cpus']} CPUs, load average {info['load_average']}, Python {info['python']},"
        f" {info['event_loop']} loop; {versions}"
    )
