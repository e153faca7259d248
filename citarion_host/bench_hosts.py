"""The platform split across 1, 2 and 3 host processes on a 3-node loopback cluster (``--case hosts``).

The paper-trading topology of ``configs/prod.toml`` (the demo's, on JetStream) runs as one process, then
split with ``run --only`` into two and into three processes, each on its own server of the cluster:
deterministic (the feed's host orders every host's handlers: ``split.py``) and free-running (the
services started first, as docs/deploy.md says). Figures: the events the run stored (from the stream)
over the wall time from the first host's start to the last one's exit, and the processes' CPU. In
interleaved rounds, a fresh stream each.

What limits it here: the machine's two cores are shared by three nats-servers (replicating every event
three times) and the host processes; more processes add parallel handlers but also more deliveries
(every host reads the events its bots need) and cross-process hops on each step of a cascade.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
from nats.aio.msg import Msg

from .bench import BenchError, Figures, Table, median_figures, paired, ratio, rounds
from .natsserver import NatsCluster

__all__ = ["SPLITS", "run_hosts"]

REPO = Path(__file__).resolve().parents[1]
PROD = REPO / "configs" / "prod.toml"

#: Which bots each process runs, for 1, 2 and 3 processes (services first, the feed last).
SPLITS: dict[int, list[str | None]] = {
    1: [None],
    2: ["exchange,risk,wolf,logos", "argus,mesh,scale,band,edge,vision,lumi"],
    3: ["exchange,risk,wolf", "argus,mesh,scale,band,edge,vision", "logos,lumi"],
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _stored_then_dropped(url: str, stream: str) -> int:
    """How many events the run stored; the stream is deleted (the next round's owns the subjects)."""
    nc = await nats.connect(url)
    try:
        count = int((await nc.jsm().stream_info(stream)).state.messages)
        await nc.jsm().delete_stream(stream)
        return count
    finally:
        await nc.close()


async def _until_started(
    seen: set[str], bots: set[str], process: subprocess.Popen[str], timeout: float = 60.0
) -> None:
    """Until these bots announced ``system.bot.started`` (their subscriptions exist by then)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not bots <= seen:
        if process.poll() is not None:
            _, stderr = process.communicate()
            raise BenchError(f"hosts: a host exited {process.returncode} at start: {stderr[-800:]}")
        if asyncio.get_running_loop().time() > deadline:
            raise BenchError(f"hosts: {sorted(bots - seen)} did not start within {timeout:g}s")
        await asyncio.sleep(0.05)


async def _split_round(
    cluster: NatsCluster, processes: int, stream: str, deterministic: bool = True
) -> Figures:
    urls = cluster.urls
    env = {
        "CITARION_BACKEND__DETERMINISTIC": "true" if deterministic else "false",
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CITARION_BACKEND__NATS__STREAM": stream,
        "CITARION_BACKEND__NATS__REPLICAS": "3",
        "CITARION_BACKEND__NATS__MANAGE_STREAM": "true",
        "CITARION_HOST__PROGRESS_INTERVAL_S": "0",
        "CITARION_HOST__SUMMARY": "false",
        "CITARION_STATE__ENABLED": "false",
        "CITARION_LOGGING__LEVEL": "ERROR",
    }
    seen: set[str] = set()
    watcher = await nats.connect(urls[0])

    async def announced(msg: Msg) -> None:
        seen.add(json.loads(msg.data)["payload"]["botId"])

    await watcher.subscribe("system.bot.started", cb=announced)
    await watcher.flush()
    cpu_before, started = _children_cpu(), time.perf_counter()
    running: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="citarion-hosts-") as tmp:
        for index, only in enumerate(SPLITS[processes]):
            directory = Path(tmp) / f"host-{index}"
            directory.mkdir()
            args = [sys.executable, "-m", "citarion_host.cli", "run", "--config", str(PROD)]
            args += ["--only", only] if only else []
            host_env = {**env, "CITARION_BACKEND__NATS__SERVERS": json.dumps([urls[index % len(urls)]])}
            running.append(
                subprocess.Popen(
                    args,
                    cwd=directory,
                    env=host_env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            if only and not deterministic and index < len(SPLITS[processes]) - 1:
                # free-running: subscribed before the feed starts (deterministic: the feed's host waits)
                await _until_started(seen, set(only.split(",")), running[-1])
        for process in running:
            _, stderr = await asyncio.to_thread(process.communicate, timeout=600)
            if process.returncode != 0:
                raise BenchError(f"hosts: a process exited {process.returncode}: {stderr[-500:]}")
    wall = time.perf_counter() - started
    await watcher.close()
    events = await _stored_then_dropped(urls[0], stream)
    return {
        "events": events,
        "events_per_s": events / wall,
        "seconds": wall,
        "cpu_us_per_event": (_children_cpu() - cpu_before) * 1e6 / max(events, 1),
    }


async def run_hosts(rounds_: int = 1) -> list[Table]:
    """1, 2 and 3 host processes on a 3-node cluster, interleaved; events/s of the whole platform."""
    with NatsCluster(3) as cluster:
        serial = iter(range(1_000_000))

        def variant(n: int, deterministic: bool) -> Callable[[], Awaitable[Figures]]:
            return lambda: _split_round(cluster, n, f"bench-hosts-{next(serial)}", deterministic)

        cases = {
            f"{n} host process{'es' if n > 1 else ''}{'' if deterministic else ', free-running'}": variant(
                n, deterministic
            )
            for deterministic in (True, False)
            for n in SPLITS
        }
        results = await rounds(cases, rounds_)
    table = Table(
        "the paper-trading platform on a 3-node loopback cluster, split across host processes",
        "configs/prod.toml (stream replicas 3) as 1 process, or split with run --only into 2 or 3 (each on"
        " its own server); deterministic (the default: the feed's host orders every host's handlers, the"
        " figures of one process) and free-running ([backend] deterministic = false); events stored over"
        " the wall time of the whole run; CPU of the host processes",
        ["events", "events_per_s", "cpu_us_per_event", "spread_pct"],
        [{"name": name, **median_figures(r)} for name, r in results.items()],
    )
    one, free = "1 host process", ", free-running"
    table.ratios = [
        ratio("2 processes / 1", paired(results, "2 host processes", one)),
        ratio("3 processes / 1", paired(results, "3 host processes", one)),
        ratio("2 processes / 1, free-running", paired(results, "2 host processes" + free, one + free)),
        ratio("3 processes / 1, free-running", paired(results, "3 host processes" + free, one + free)),
    ]
    table.notes.append(
        "2 cores for 3 servers and up to 3 hosts: the processes compete for CPU. Deterministic split runs"
        " give one process's figures at one request/reply round trip per remote handler call, one handler"
        " at a time across the fleet; free-running split runs are correct but not identical to one"
        " process (docs/deploy.md)"
    )
    return [table]
