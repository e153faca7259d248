"""Bot state on NATS JetStream: the key-value store, resuming exactly after the state, kill -9.

Real ``nats-server`` processes from the fixtures (file storage, the default), never the shared one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError

from citarion_host.cli import main
from citarion_host.natsserver import NatsServer
from tests.host_bots import Recorder
from tests.state_bots import Tally, Ticks

from .state_helpers import FAST_RESTARTS, handled, orders, start, tally, ticks, write

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.nats


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    Recorder.seen.clear()
    Recorder.instances.clear()
    Tally.calls = 0
    Ticks.resume = None
    yield


def nats_backend(server: NatsServer, stream: str, bucket: str = "citarion-state") -> str:
    """``max_share = 1``: a snapshot every 100 events exactly, whatever it costs (the tests count on it)."""
    return (
        f'[backend]\ntype = "nats"\n[backend.nats]\nservers = ["{server.url}"]\nstream = "{stream}"\n'
        f'durable_start = "all"\n[state]\nbucket = "{bucket}"\nevery_events = 100\nevery_s = 0.2\n'
        "max_share = 1.0\n"
    )


async def kv_get(server: NatsServer, bucket: str, key: str) -> bytes | None:
    connection = await nats.connect(server.url)
    try:
        kv = await connection.jetstream().key_value(bucket)
        return (await kv.get(key)).value
    except (BucketNotFoundError, KeyNotFoundError, KeyDeletedError):
        return None  # not yet created, or reset
    finally:
        await connection.close()


async def kv_put(server: NatsServer, bucket: str, key: str, value: bytes) -> None:
    connection = await nats.connect(server.url)
    try:
        await (await connection.jetstream().key_value(bucket)).put(key, value)
    finally:
        await connection.close()


async def stored_order_ids(server: NatsServer, stream: str) -> list[str]:
    """Every ``analytics.tally.order`` the stream stored, in order."""
    connection = await nats.connect(server.url)
    try:
        js = connection.jetstream()
        info = await js.stream_info(stream, subjects_filter="analytics.tally.order")
        count = (info.state.subjects or {}).get("analytics.tally.order", 0)
        sub = await js.subscribe("analytics.tally.order", ordered_consumer=True, stream=stream)
        ids = [json.loads((await sub.next_msg(timeout=5)).data)["payload"]["id"] for _ in range(count)]
        await sub.unsubscribe()
        return ids
    finally:
        await connection.close()


async def test_a_consumer_acked_past_the_snapshot_is_rewound_and_the_gap_applied_once_quietly(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The host died after acknowledging events past its last snapshot: resuming from the consumer
    would skip them. The restarted host rewinds the durable to the snapshot, applies them again, and
    publishes none of their outputs a second time."""
    backend = nats_backend(nats_server, "rewind")
    config = [
        FAST_RESTARTS,
        backend,
        ticks(600, pause_at=300),
        tally(publish_every=5, prefix="band", extra="durable = true"),
        orders(),
    ]
    path = write(tmp_path / "host.toml", *config)
    Ticks.resume = asyncio.Event()
    host = await start(path)
    try:
        await handled(host, "tally", 300)
        await host.bus.settle()
        older = host.state.keeper.latest["tally"]
        assert older.handled == 300 and older.seq is not None
        Ticks.resume.set()
        await handled(host, "tally", 600)
        await host.bus.settle()
    finally:
        await host.stop()
    assert host.final_stats["tally"]["bot"]["count"] == 600
    await kv_put(nats_server, "citarion-state", "tally", msgspec.json.encode(older))  # "lost" 300 events

    host = await start(path)  # the feed restores next = 600: nothing new is published
    try:
        await handled(host, "tally", 600)
        await host.bus.settle()
        assert host.runners["tally"].checkpoints.replay_until > older.seq  # type: ignore[union-attr]
    finally:
        await host.stop()
    figures = host.final_stats["tally"]["bot"]
    assert figures["count"] == 600 and figures["gaps"] == figures["repeats"] == 0
    assert figures["total"] == sum(range(600))
    assert host.final_stats["tally"]["checkpoints"]["suppressed"] == 60, (
        "the gap's 60 orders were not sent again"
    )
    assert await stored_order_ids(nats_server, "rewind") == [f"band-{k}" for k in range(1, 121)]


# -- kill -9 ------------------------------------------------------------------------------------------

TOTAL = 4000


async def load_stream(server: NatsServer, tmp_path: Path, stream: str) -> None:
    """The deterministic feed, run to its end: ``TOTAL`` numbers stored in ``stream``."""
    path = write(
        tmp_path / f"load-{stream}.toml", FAST_RESTARTS, nats_backend(server, stream, "feeds"), ticks(TOTAL)
    )
    host = await start(path)
    try:
        from tests.bus.conftest import eventually

        await eventually(lambda: host.runners["ticks"].bot.next >= TOTAL, timeout=60, what="the feed")  # type: ignore[union-attr]
        await host.bus.settle()
    finally:
        await host.stop()


def consumer_config(server: NatsServer, tmp_path: Path, stream: str) -> Path:
    return write(
        tmp_path / f"consume-{stream}.toml",
        FAST_RESTARTS,
        nats_backend(server, stream, f"state-{stream}"),
        tally(extra="durable = true", sleep_s=0.0002),
    )


def host_process(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "citarion_host.cli", "--config", str(config)],
        cwd=config.parent,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def snapshot_of(server: NatsServer, stream: str) -> dict[str, Any] | None:
    data = asyncio.run(kv_get(server, f"state-{stream}", "tally"))
    return json.loads(data) if data else None


def wait_for(
    server: NatsServer, stream: str, process: subprocess.Popen[str], at_least: int
) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        snapshot = snapshot_of(server, stream)
        if snapshot is not None and snapshot["handled"] >= at_least:
            return snapshot
        if process.poll() is not None:
            raise AssertionError(
                f"host exited ({process.returncode}): {process.stderr.read() if process.stderr else ''}"
            )
        time.sleep(0.02)
    raise AssertionError(f"no snapshot with {at_least} events in time")


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]


def shown(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """``citarion-host state show --config F --bot tally --json``."""
    capsys.readouterr()
    assert main(["state", "show", "--config", str(config), "--bot", "tally", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["bot"] for row in rows] == ["tally"]
    return dict(rows[0])


def test_a_host_killed_mid_run_resumes_with_the_figures_of_an_uninterrupted_run(
    nats_server: NatsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each run on a server of its own (one stream owns the subjects), both with file storage."""
    with NatsServer() as other:
        asyncio.run(load_stream(other, tmp_path, "whole"))
        whole = consumer_config(other, tmp_path, "whole")
        process = host_process(whole)
        wait_for(other, "whole", process, TOTAL)
        stop(process)
        expected = shown(whole, capsys)

    asyncio.run(load_stream(nats_server, tmp_path, "killed"))
    killed = consumer_config(nats_server, tmp_path, "killed")
    process = host_process(killed)
    at_kill = wait_for(nats_server, "killed", process, 600)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert at_kill["handled"] < TOTAL, "killed mid-run"
    process = host_process(killed)
    wait_for(nats_server, "killed", process, TOTAL)
    stop(process)
    resumed = shown(killed, capsys)

    assert (
        expected["state"]["count"] == TOTAL and expected["state"]["gaps"] == expected["state"]["repeats"] == 0
    )
    assert resumed["state"] == expected["state"]
    assert resumed["handled"] == expected["handled"] == TOTAL

    assert main(["state", "reset", "--config", str(killed), "--bot", "tally"]) == 0
    assert "reset tally (kv state-killed)" in capsys.readouterr().out
    assert snapshot_of(nats_server, "killed") is None


async def test_a_state_read_while_the_server_is_briefly_away_is_retried_not_failed(
    nats_server: NatsServer,
) -> None:
    """A bucket's server that does not answer for a moment (a restart here; in a cluster, the bucket's
    replicas electing a leader) delays a state read; it does not fail the bot's start."""
    from citarion_host.bus.config import NatsSettings
    from citarion_host.statekv import open_kv_store

    settings = NatsSettings(servers=[nats_server.url], api_timeout_s=0.5)
    connection = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        store = await open_kv_store(connection, settings, "citarion-state")
        assert store is not None
        await store.save("argus", b"state")
        nats_server.stop()
        reading = asyncio.create_task(store.load("argus"))
        await asyncio.sleep(1.5)  # several api timeouts while the server is gone
        assert not reading.done(), "the read waits for the server instead of failing"
        nats_server.start()
        assert await asyncio.wait_for(reading, 30) == b"state"
    finally:
        await connection.close()


async def test_a_state_write_that_finds_the_bucket_gone_makes_it_again_at_once(
    nats_server: NatsServer,
) -> None:
    """A put that reaches no stream gets "no responders" (``NoStreamResponseError`` from nats-py). While
    the bucket's replicas elect a leader (``tests/test_cluster_kill.py``, a node killed) that is worth
    waiting for, and the write is retried; but a bucket that is gone (deleted; memory storage after a
    server restart) never answers: retrying held every snapshot, and the host's stop, for 30 s each.
    So the store asks whether the bucket's stream exists, and one that does not is made again, loudly,
    and the write lands at once."""
    from citarion_host.bus.config import NatsSettings
    from citarion_host.statekv import RETRY_BUDGET_S, open_kv_store

    settings = NatsSettings(servers=[nats_server.url], api_timeout_s=0.5)
    connection = await nats.connect(nats_server.url)
    try:
        store = await open_kv_store(connection, settings, "state-gone")
        assert store is not None
        await store.save("argus", b"before")
        await connection.jsm().delete_stream("KV_state-gone")  # nobody answers on $KV.state-gone.>
        started = time.monotonic()
        await asyncio.wait_for(store.save("argus", b"after"), RETRY_BUDGET_S / 3)
        print(f"written {time.monotonic() - started:.2f} s after the bucket was deleted")
        assert store.remade == 1 and await store.load("argus") == b"after"
        reader = await open_kv_store(connection, settings, "state-gone", create=False)
        assert reader is not None and await reader.load("argus") == b"after"
    finally:
        await connection.close()


async def test_a_state_write_with_no_storage_left_fails_at_once_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server's JetStream storage full: a put is answered "insufficient resources" (503, as during
    an election), which was retried for 30 s per snapshot (SIGTERM took minutes: one wait per bot) and
    then reported as ``ServiceUnavailableError()``. No wait makes space: it fails at once, naming the
    cause."""
    from citarion_host.bus.config import NatsSettings
    from citarion_host.errors import StateError
    from citarion_host.statekv import open_kv_store

    limit = tmp_path / "limit.conf"
    limit.write_text("jetstream { max_file_store: 256KB }\n")
    with NatsServer(config_file=limit) as server:
        settings = NatsSettings(servers=[server.url], api_timeout_s=0.5)
        connection = await nats.connect(server.url)
        try:
            store = await open_kv_store(connection, settings, "state-full")
            assert store is not None
            with (
                caplog.at_level("WARNING", logger="citarion_host.state"),
                pytest.raises(StateError) as raised,
            ):
                for n in range(100):  # 100 x 8 KB: past 256 KB
                    await store.save(f"bot{n}", b"x" * 8192)
            assert "cannot write its state to kv state-full" in str(raised.value)
            assert "code=503 err_code=10023 description='insufficient resources'" in str(raised.value)
            assert [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()] == []
        finally:
            await connection.close()
