"""The demo as a benchmark: the ``configs/dev.toml`` topology on memory and on JetStream, one run.

Both backends run the same topology (every bot of ``configs/paper-trading.toml``, the same seeded
replay), through :func:`~citarion_host.app.run_host` as ``make demo`` does, in interleaved rounds;
only ``[backend]`` differs. JetStream uses a ``nats-server`` the benchmark started (file storage, a
fresh stream per round). The record (every event as JSON lines, part of the demo) goes to a
temporary file; progress lines and the summary are off.

Figures: events/s through the bus (the monitor's count over its run time, what the demo prints), and
CPU per event: this process's CPU time over the run divided by the events, plus the NATS server's
when it is a local child (``/proc``): on JetStream some of the work moves to the server.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .app import run_host
from .bench import BenchError, Figures, Table, median_figures, paired, ratio, rounds
from .bench_nats import drop_stream, jetstream_settings
from .settings import LoadedConfig, load_config, parse_config

__all__ = ["DEMO_CONFIG", "demo_config", "demo_round", "process_cpu_seconds", "run_demo"]

#: ``configs/dev.toml`` of a source checkout (the demo's config).
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dev.toml"


def demo_config(path: Path, backend: dict[str, Any], record: Path) -> LoadedConfig:
    """``path``'s config on ``backend``; no reload, progress or summary; records to ``record``."""
    loaded = load_config(path)
    data = loaded.config.model_dump(mode="json")
    data["host"].update(
        reload=False, watch_plugins=False, progress_interval_s=0, summary=False, record=str(record)
    )
    data["backend"] = {**backend, "max_pending": data["backend"]["max_pending"]}
    return parse_config(data, loaded.path, files=loaded.files, bot_origins=list(loaded.bot_origins))


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` from ``/proc`` (None where there is no ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def demo_round(path: Path, backend: dict[str, Any], server_pid: int | None = None) -> Figures:
    """One demo run on ``backend``: events/s, wall time, CPU us per event (this process, the server)."""
    with tempfile.TemporaryDirectory(prefix="citarion-bench-") as tmp:
        loaded = demo_config(path, backend, Path(tmp) / "events.jsonl")
        server_before = process_cpu_seconds(server_pid) if server_pid else None
        cpu, wall = time.process_time(), time.perf_counter()
        summary = await run_host(loaded, reload=False, out=io.StringIO(), handle_signals=False)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        server_after = process_cpu_seconds(server_pid) if server_pid else None
    events = summary["events"]
    failing = [row["bot"] for row in summary["bots"] if row["errors"] or row["state"] != "running"]
    if not events or failing:
        raise BenchError(f"demo on {backend['type']}: {events} events, bots with errors: {failing or 'none'}")
    figures: Figures = {
        "events": events,
        "events_per_s": summary["events_per_s"],
        "seconds": wall,
        "cpu_us_per_event": cpu * 1e6 / events,
    }
    if server_before is not None and server_after is not None:
        figures["server_cpu_us_per_event"] = (server_after - server_before) * 1e6 / events
    return figures


async def _jetstream_round(
    path: Path, url: str, stream: str, server_pid: int | None, deterministic: bool = True
) -> Figures:
    backend = {
        "type": "nats",
        "deterministic": deterministic,
        "nats": jetstream_settings(url, stream).model_dump(mode="json"),
    }
    try:
        return await demo_round(path, backend, server_pid)
    finally:
        await drop_stream(url, stream)


async def run_demo(
    url: str, path: Path = DEMO_CONFIG, rounds_: int = 3, server_pid: int | None = None
) -> list[Table]:
    """The demo on memory and on JetStream, deterministic (the default) and free-running, interleaved;
    the JetStream/memory ratios and what the deterministic mode costs on each."""
    if not path.is_file():
        raise BenchError(f"{path}: no such config (the demo case needs a source checkout, or --config)")
    serial = iter(range(1_000_000))
    results = await rounds(
        {
            "memory": lambda: demo_round(path, {"type": "memory"}),
            "JetStream": lambda: _jetstream_round(path, url, f"bench-demo-{next(serial)}", server_pid),
            "memory, free-running": lambda: demo_round(path, {"type": "memory", "deterministic": False}),
            "JetStream, free-running": lambda: _jetstream_round(
                path, url, f"bench-demo-{next(serial)}", server_pid, deterministic=False
            ),
        },
        rounds_,
    )
    table = Table(
        f"demo: the {path.name} topology, memory vs JetStream, deterministic vs free-running",
        "the same bots and seeded replay through run_host, only [backend] differs (type, deterministic);"
        " events/s through the bus; CPU us per event of this process (and of the local nats-server)",
        ["events", "events_per_s", "cpu_us_per_event", "server_cpu_us_per_event", "spread_pct"],
        [{"name": name, **median_figures(r)} for name, r in results.items()],
    )
    free_memory, free_jetstream = "memory, free-running", "JetStream, free-running"
    table.ratios = [
        ratio("JetStream / memory (events/s)", paired(results, "JetStream", "memory"), at_least=0.5),
        ratio("free-running: JetStream / memory", paired(results, free_jetstream, free_memory)),
        ratio("memory: deterministic / free-running", paired(results, "memory", free_memory), at_least=0.7),
        ratio("JetStream: deterministic / free-running", paired(results, "JetStream", free_jetstream)),
        ratio("memory CPU us/event", table.row("memory")["cpu_us_per_event"], at_most=25),
    ]
    return [table]
