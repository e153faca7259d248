"""The host on NATS JetStream, as a real process: SIGTERM mid-stream, and the paper-trading demo."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest

from citarion_host.natsserver import NatsServer

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.nats


def host_process(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "citarion_host.cli", "--config", str(config), *args],
        cwd=config.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_lines(path: Path, count: int, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        if process.poll() is not None:
            raise AssertionError(
                f"host exited early ({process.returncode}): {process.stderr.read() if process.stderr else ''}"
            )
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {count} lines in {path}")


def stored_numbers(server: NatsServer, stream: str) -> int:
    """How many numbers JetStream acknowledged: they are published in order, one at a time, so the
    last stored one tells (the stream holds the host's system.* events too)."""

    async def count() -> int:
        connection = await nats.connect(server.url)
        try:
            jsm = connection.jetstream()
            info = await jsm.stream_info(stream, subjects_filter="analytics.number.>")
            last = await jsm.get_last_msg(stream, "analytics.number.emitted")
            assert info.state.subjects == {
                "analytics.number.emitted": json.loads(last.data)["payload"]["n"] + 1
            }
            return int(json.loads(last.data)["payload"]["n"]) + 1
        finally:
            await connection.close()

    return asyncio.run(count())


def sigterm_config(server: NatsServer, sink: Path, *, publisher: bool) -> str:
    return f"""
[host]
progress_interval_s = 0
summary = false
drain_timeout_s = 15

[backend]
type = "nats"
[backend.nats]
servers = ["{server.url}"]
stream = "sigterm-test"

[[bots]]
id = "numbers"
code = "ORA"
plugin = "tests.host_bots:Numbers"
enabled = {str(publisher).lower()}
publish = ["analytics.number.>"]
[bots.params]
count = 1000000
pace_s = 0.0005

[[bots]]
id = "sink"
code = "ORA"
plugin = "tests.host_bots:FileRecorder"
subscribe = ["analytics.number.>"]
durable = true
[bots.params]
path = "{sink}"
"""


def test_sigterm_mid_stream_exits_0_and_no_acknowledged_event_is_lost(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    sink = tmp_path / "seen.txt"
    config = tmp_path / "host.toml"
    config.write_text(sigterm_config(nats_server, sink, publisher=True))
    process = host_process(config)
    wait_for_lines(sink, 300, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    stored = stored_numbers(nats_server, "sigterm-test")  # every publish JetStream acknowledged
    first_run = [int(line) for line in sink.read_text().splitlines()]
    assert first_run == list(range(len(first_run))), "in order, nothing skipped"
    assert len(first_run) >= 300 and stored >= len(first_run)

    if stored > len(first_run):
        # Acknowledged but not handled before the exit: a restart (without the publisher) must deliver
        # them, the durable subscription resuming where it stopped. (New lines prove the host is up
        # before it is signalled.)
        config.write_text(sigterm_config(nats_server, sink, publisher=False))
        process = host_process(config)
        wait_for_lines(sink, stored, process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
    seen = [int(line) for line in sink.read_text().splitlines()]
    assert set(seen) == set(range(stored)), "every acknowledged event was delivered"
    assert seen[len(first_run) :] == list(range(len(first_run), stored)), "resumed exactly where it stopped"


def test_the_paper_trading_demo_runs_on_jetstream(nats_server: NatsServer, tmp_path: Path) -> None:
    """configs/prod.toml (same topology, NATS JetStream), servers from the environment as in production."""
    summary_file = tmp_path / "summary.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CITARION_BACKEND__NATS__SERVERS": json.dumps([nats_server.url]),
        "CITARION_BACKEND__NATS__STREAM": "demo",
        "CITARION_HOST__PROGRESS_INTERVAL_S": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "citarion_host.cli", "--config", str(REPO / "configs" / "prod.toml"),
         "--summary-json", str(summary_file)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "events/s through the bus" in done.stdout
    summary = json.loads(summary_file.read_text())
    rows = {row["bot"]: row for row in summary["bots"]}
    assert summary["events"] > 8_000  # ~9,350: the exchange reports positions on fills, not every candle
    assert all(row["errors"] == 0 for row in rows.values())
    for trader in ("mesh", "scale", "band", "edge"):
        assert rows[trader]["signals"] > 0 and rows[trader]["fills"] > 0, trader
    assert rows["exchange"]["stats"]["balanced"] is True, "the books balance to the cent"
    assert rows["lumi"]["stats"]["completed"] is True
    records = (tmp_path / "runs" / "prod-events.jsonl").read_text().splitlines()
    assert len(records) == summary["events"]
