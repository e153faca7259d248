"""Bot replicas (``replicas.py``, ``lease.py``): leases, standbys, takeovers and fencing, on real
nats-server processes from the fixtures; host processes started with ``citarion-host run --only`` and
killed with SIGKILL.

No durations are asserted: the waits have generous timeouts, and the lease tests move a clock of
their own instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js.kv import KeyValue

from citarion_host.bus.config import NatsSettings
from citarion_host.errors import ConfigError
from citarion_host.host import Host
from citarion_host.lease import LeaseBucket, LeaseTiming, open_lease_bucket
from citarion_host.natsserver import NatsServer
from citarion_host.plugins import Plugins
from citarion_host.settings import load_config
from citarion_host.topology import Placement
from citarion_host.wiring import check_config
from tests.bus.conftest import eventually

from .state_helpers import FAST_RESTARTS, entry, write

REPO = Path(__file__).resolve().parents[1]
TIMING = LeaseTiming(ttl_s=4.0, renew_s=1.0)


class Clock:
    """A clock the test moves: the lease logic reads time only through it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def leases(nats_server: NatsServer) -> AsyncIterator[KeyValue]:
    connection = await nats.connect(nats_server.url)
    try:
        yield await open_lease_bucket(connection, NatsSettings(servers=[nats_server.url]), "leases")
    finally:
        await connection.close()


def contender(kv: KeyValue, name: str, clock: Clock) -> LeaseBucket:
    return LeaseBucket(kv, TIMING, name, clock)


# -- configs ------------------------------------------------------------------------------------------


def nats_backend(
    server: NatsServer, stream: str, *, ttl: float = 6.0, renew: float = 1.0, ack_wait: float = 30
) -> str:
    """``ack_wait``: when an event a killed instance held comes back to another (and when one still
    waiting in a live instance's backlog is sent again: keep it above the time to work off a backlog)."""
    return (
        f'[backend]\ntype = "nats"\n[backend.nats]\nservers = ["{server.url}"]\nstream = "{stream}"\n'
        f'durable_start = "all"\nack_wait_s = {ack_wait}\n'
        "[state]\nevery_events = 50\nevery_s = 0.2\nmax_share = 1.0\n"
        f"[replicas]\nlease_ttl_s = {ttl}\nrenew_s = {renew}\n"
    )


def numbers(count: int, pace_s: float) -> str:
    return entry(
        "numbers",
        "tests.host_bots:Numbers",
        publish='["analytics.number.>"]',
        count=count,
        pace_s=pace_s,
    )


def replicated(bot_id: str, plugin: str, *, replicas: int = 2, sleep_s: float = 0.0, extra: str = "") -> str:
    return entry(
        bot_id,
        f"tests.replica_bots:{plugin}",
        publish='["analytics.replica.>"]',
        subscribe='["analytics.number.>"]',
        extra=f"durable = true\nreplicas = {replicas}\n{extra}",
        sleep_s=sleep_s,
    )


async def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    await eventually(condition, timeout=timeout, what=what)


# -- the check ----------------------------------------------------------------------------------------


def replica_findings(tmp_path: Path, backend: str, bot: str) -> list[tuple[str, str]]:
    path = write(tmp_path / "check.toml", backend, numbers(10, pace_s=0), bot)
    return [(f.severity, f.message) for f in check_config(path) if f.key == "replicas"]


CORE = '[backend]\ntype = "nats"\n[backend.nats]\njetstream = false\n'
JETSTREAM = '[backend]\ntype = "nats"\n'


@pytest.mark.parametrize(
    ("backend", "bot", "expected"),
    [
        ("", replicated("echo", "Echo"), ("warning", "no effect on the in-memory bus")),
        (CORE, replicated("echo", "Echo"), ("error", "replicas needs JetStream")),
        (JETSTREAM, replicated("echo", "Echo").replace("durable = true", ""), ("error", "durable = true")),
        (JETSTREAM, replicated("c", "Counter", extra='queue = "q"'), ("error", "cannot share queue group")),
        (JETSTREAM + '[state]\nstore = "process"\n', replicated("c", "Counter"), ("error", "cannot read")),
        (
            JETSTREAM + '[state]\nstore = "dir"\ndir = "s"\n',
            replicated("c", "Counter"),
            ("warning", "shares"),
        ),
        (JETSTREAM + "[state]\nenabled = false\n", replicated("c", "Counter"), ("warning", "fresh")),
    ],
    ids=["memory", "core", "not-durable", "stateful-queue", "store-process", "store-dir", "no-state"],
)
def test_check_names_replicas_that_cannot_work(
    tmp_path: Path, backend: str, bot: str, expected: tuple[str, str]
) -> None:
    found = replica_findings(tmp_path, backend, bot)
    assert len(found) == 1 and found[0][0] == expected[0] and expected[1] in found[0][1], found


@pytest.mark.parametrize("plugin", ["Echo", "Counter"])
def test_check_accepts_replicas_on_jetstream_with_a_durable(tmp_path: Path, plugin: str) -> None:
    assert replica_findings(tmp_path, JETSTREAM, replicated("r", plugin)) == []
    assert (
        replica_findings(
            tmp_path, JETSTREAM, replicated("r", plugin, replicas=1).replace("durable = true", "")
        )
        == []
    )


def test_a_renewal_interval_over_half_the_lease_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", "[replicas]\nlease_ttl_s = 4\nrenew_s = 2.5\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert "renew_s (2.5) must be at most half of lease_ttl_s (4)" in "\n".join(refused.value.problems)


# -- the lease --------------------------------------------------------------------------------------


async def test_of_two_contenders_for_a_free_seat_exactly_one_wins(leases: KeyValue) -> None:
    clock = Clock()
    first, second = contender(leases, "a", clock), contender(leases, "b", clock)
    for key in (f"bot.{i}" for i in range(20)):
        won = await asyncio.gather(first.acquire(key), second.acquire(key))
        assert sum(lease is not None for lease in won) == 1, key
        winner = "a" if won[0] is not None else "b"
        assert await first.holder_of(key) == winner


async def test_a_renewed_lease_is_never_taken_over(leases: KeyValue) -> None:
    clock = Clock()
    holder, standby = contender(leases, "a", clock), contender(leases, "b", clock)
    lease = await holder.acquire("bot.0")
    assert lease is not None and lease.took_over is None
    for _ in range(20):  # 20 renewals, each within the ttl of the standby's last look
        assert await standby.acquire("bot.0") is None
        clock.now += TIMING.renew_s
        assert await holder.renew(lease)
        assert lease.deadline == clock.now + TIMING.valid_s
        clock.now += TIMING.ttl_s - TIMING.renew_s  # the standby looks again just before the ttl
    assert await standby.holder_of("bot.0") == "a"


async def test_a_lapsed_lease_is_taken_over_and_its_old_holder_was_fenced_before(leases: KeyValue) -> None:
    clock = Clock()
    holder, standby = contender(leases, "a", clock), contender(leases, "b", clock)
    lease = await holder.acquire("bot.0")
    assert lease is not None
    clock.now = 0.5
    assert await standby.acquire("bot.0") is None  # first look: the revision starts counting
    clock.now = 0.5 + TIMING.ttl_s - 0.01
    assert await standby.acquire("bot.0") is None, "not before the ttl has passed on its clock"
    clock.now = 0.5 + TIMING.ttl_s
    taken = await standby.acquire("bot.0")
    assert taken is not None and taken.took_over == "a"
    assert lease.deadline < clock.now, "the old holder's deadline (its fence) came before the takeover"
    assert not await holder.renew(lease), "the old holder learns it lost the lease at its renewal"
    assert not await holder.release(lease), "nor can it release the new holder's lease"
    assert await holder.holder_of("bot.0") == "b"


async def test_a_released_lease_is_free_at_once(leases: KeyValue) -> None:
    clock = Clock()
    holder, standby = contender(leases, "a", clock), contender(leases, "b", clock)
    lease = await holder.acquire("bot.0")
    assert lease is not None and await standby.acquire("bot.0") is None
    assert await holder.release(lease)
    assert await standby.holder_of("bot.0") is None
    taken = await standby.acquire("bot.0")  # the same instant: no ttl to wait for
    assert taken is not None and taken.took_over is None
    assert await holder.acquire("bot.0") is None


async def test_a_contender_racing_a_renewal_loses(leases: KeyValue) -> None:
    """A standby that saw the revision stand for the ttl but whose takeover comes after a renewal
    (the holder was slow, not dead) fails its conditional write: the holder keeps the lease."""
    clock = Clock()
    holder, standby = contender(leases, "a", clock), contender(leases, "b", clock)
    lease = await holder.acquire("bot.0")
    assert lease is not None
    assert await standby.acquire("bot.0") is None
    clock.now = TIMING.ttl_s
    seen_revision = lease.revision
    assert await holder.renew(lease) and lease.revision != seen_revision
    # the standby still believes seen_revision stood for the ttl; its write is refused on the server
    standby._seen["bot.0"].revision = seen_revision  # the race, made deterministic
    assert await standby.acquire("bot.0") is None
    assert await standby.holder_of("bot.0") == "a" and await holder.renew(lease)


# -- the host: fencing --------------------------------------------------------------------------------


@pytest.mark.parametrize("plugin", ["Counter", "Echo"])
async def test_an_active_replica_whose_lease_is_taken_is_fenced_and_stands_by(
    nats_server: NatsServer, tmp_path: Path, plugin: str
) -> None:
    """Another instance takes the seat (as after a partition): at its next renewal the active one
    stops handling, takes no more snapshots, lets go of the bot's durable consumer (so the new holder
    can subscribe it), and stands by; once the seat is free again it takes it back."""
    path = write(
        tmp_path / "host.toml",
        FAST_RESTARTS,
        nats_backend(nats_server, "fence"),
        replicated("bot", plugin, replicas=1 if plugin == "Counter" else 2).replace(
            "replicas = 1", "replicas = 2"
        ),
    )
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    connection = await nats.connect(nats_server.url)
    try:
        await until(lambda: host.runners["bot"].state == "running", "the replica to take its seat")
        active = host.runners["bot"]
        replica = host.replicas.replicas["bot"]
        assert replica.lease is not None
        seat = replica.lease.key
        jsm = connection.jetstream()
        assert (await jsm.consumer_info("fence", "bot")).push_bound
        kv = await jsm.key_value("citarion-leases")
        held = await kv.get(seat)
        await kv.update(seat, json.dumps({"holder": "thief"}).encode(), last=held.revision)
        await until(lambda: replica.fences == 1, "the replica to be fenced")
        await until(lambda: host.runners["bot"] is not active, "the fenced instance to be replaced")
        assert "taken by another instance" in (replica.fence_reason or "")
        assert active.state == "stopped" and active.subscription is None and active.bot is None
        assert active.checkpoints is None, "the fenced instance takes no more snapshots"
        # A stateless bot may already be taking its free second seat ("starting", not ready for that
        # moment, as any bot starting): the check is on the state it settles in.
        await until(lambda: host.runners["bot"].state in ("standby", "running"), "the replacement settled")
        assert host.health().ready, host.health().reasons  # a standby is a healthy state
        if plugin == "Counter":  # one seat, held by the thief: nothing consumes the bot's durable
            assert host.runners["bot"].state == "standby" and host.runners["bot"].bot is None
            assert not (await jsm.consumer_info("fence", "bot")).push_bound, "the consumer is free"
            assert host.stats()["replicas"]["bot"]["active"] is False
            assert json.loads((await kv.get(seat)).value or b"{}")["holder"] == "thief"
            await kv.delete(seat)  # the thief stops cleanly
        # a stateless bot has a second seat, free: it takes that one at its next look
        await until(lambda: host.runners["bot"].state == "running", "the replica to take a seat again")
        assert replica.lease is not None and host.stats()["replicas"]["bot"]["active"] is True
        assert (await jsm.consumer_info("fence", "bot")).push_bound
    finally:
        await connection.close()
        await host.stop()


async def test_an_active_replica_that_cannot_renew_is_fenced_at_its_deadline(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The server goes away (the host is partitioned from it): renewals fail, and at the lease's
    deadline the instance stops handling and stands by, before any standby may take its seat."""
    path = write(
        tmp_path / "host.toml",
        FAST_RESTARTS,
        nats_backend(nats_server, "deadline", ttl=2.0, renew=0.5),
        replicated("counter", "Counter"),
    )
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    try:
        await until(lambda: host.runners["counter"].state == "running", "the replica to take its seat")
        replica = host.replicas.replicas["counter"]
        nats_server.kill()
        await until(lambda: replica.fences == 1, "the replica to be fenced")
        await until(lambda: host.runners["counter"].state == "standby", "the fenced replica to stand by")
        assert "not renewed in time" in replica.fence_reason or ""
    finally:
        nats_server.restart()
        await host.stop()


# -- host processes, killed ---------------------------------------------------------------------------


class Hosts:
    """``citarion-host run --only ...`` processes on one config, logs in files (not pipes: a host
    blocked on a full pipe nobody reads would stall)."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.processes: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str, only: str) -> subprocess.Popen[str]:
        directory = self.config.parent / name
        directory.mkdir()
        env = {**os.environ, "PYTHONPATH": str(REPO), "CITARION_HOST__PROGRESS_INTERVAL_S": "0"}
        with open(directory / "stdout", "w") as stdout, open(directory / "stderr", "w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "citarion_host.cli", "run", "--config", str(self.config),
                 "--only", only],
                cwd=directory, env=env, stdout=stdout, stderr=stderr, text=True,
            )  # fmt: skip
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.config.parent / name / "stderr").read_text()[-3000:]

    def alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None or process.returncode == -signal.SIGKILL, self.log(name)

    def kill(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Outputs:
    """Every event on ``subject``, as the server delivers it live to the test (core subscription)."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.lifecycle: list[tuple[str, str]] = []  # (topic action, bot id)
        self._connection: Client | None = None

    async def open(self, url: str, subject: str) -> None:
        self._connection = await nats.connect(url)

        async def output(msg: Any) -> None:
            self.payloads.append(json.loads(msg.data)["payload"])

        async def lifecycle(msg: Any) -> None:
            data = json.loads(msg.data)
            self.lifecycle.append((data["topic"].rsplit(".", 1)[-1], data["payload"]["botId"]))

        await self._connection.subscribe(subject, cb=output)
        await self._connection.subscribe("system.bot.>", cb=lifecycle)
        await self._connection.flush()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    def by_pid(self) -> Tally[int]:
        return Tally(int(p["pid"]) for p in self.payloads)


async def feed(config: Path) -> Host:
    """The feed, in this process (``--only numbers``): it lives through the kills of the others."""
    host = Host(load_config(config), plugins=Plugins(), placement=Placement.of(["numbers"]))
    await host.start()
    return host


@pytest.mark.slow
async def test_killing_a_host_of_a_replicated_stateless_bot_loses_none_of_its_events(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Two hosts run ``echo`` (replicas = 2, no state) and share its durable consumer; one is killed
    with SIGKILL mid-run. Every event is handled by some instance: the ones the killed host held
    unacknowledged come back to the other after ``ack_wait_s``. Counted by the number each event
    carries, from what the instances publish: at least once, so a number may appear twice (handled,
    then killed before its acknowledgement), never zero times."""
    total = 600
    config = write(
        tmp_path / "host.toml",
        FAST_RESTARTS,
        nats_backend(nats_server, "stateless", ack_wait=5),
        numbers(total, pace_s=0.01),
        # at most 50 events in flight for both: what the killed one held comes back after ack_wait
        replicated("echo", "Echo", sleep_s=0.002, extra="max_pending = 50"),
    )
    assert not [f for f in check_config(config) if f.severity == "error"]
    outputs, hosts = Outputs(), Hosts(config)
    await outputs.open(nats_server.url, "analytics.replica.handled")
    source: Host | None = None
    try:
        first, second = hosts.start("a", "echo"), hosts.start("b", "echo")
        await until(lambda: outputs.lifecycle.count(("started", "echo")) == 2, "both instances to start")
        source = await feed(config)
        await until(lambda: outputs.by_pid()[first.pid] >= 100, "the first host to handle 100 events")
        hosts.alive()
        hosts.kill("a")
        killed_at = outputs.by_pid()
        assert sum(killed_at.values()) < total, "killed mid-run"
        handled = lambda: {int(p["n"]) for p in outputs.payloads}  # noqa: E731
        await until(lambda: len(handled()) == total, "every event to be handled by some instance", 120)
        hosts.alive()
    finally:
        if source is not None:
            await source.stop()
        hosts.close()
        await outputs.close()
    by_pid = outputs.by_pid()
    assert handled() == set(range(total)), "no event lost"
    assert set(by_pid) == {first.pid, second.pid}, "both instances shared the work"
    assert by_pid[second.pid] > killed_at[second.pid], "the replica took the rest"
    duplicates = sum(by_pid.values()) - total
    assert 0 <= duplicates <= by_pid[first.pid], "only events of the killed host can come twice"


@pytest.mark.slow
async def test_a_stateful_bots_standby_takes_over_from_a_killed_host_with_its_state(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Two hosts run ``counter`` (replicas = 2, it keeps state): one is active, the other stands by
    and handles nothing. The active host is killed with SIGKILL; the standby takes the seat over once
    the lease lapses, restores the state from the key-value store, and counts on from there (not from
    0) to the end: its final state has counted every event exactly once."""
    total = 600
    config = write(
        tmp_path / "host.toml",
        FAST_RESTARTS,
        nats_backend(nats_server, "stateful"),
        numbers(total, pace_s=0.01),
        replicated("counter", "Counter", sleep_s=0.002),
    )
    assert not [f for f in check_config(config) if f.severity == "error"]
    outputs, hosts = Outputs(), Hosts(config)
    await outputs.open(nats_server.url, "analytics.replica.counted")
    source: Host | None = None
    try:
        processes = {"a": hosts.start("a", "counter"), "b": hosts.start("b", "counter")}
        await until(lambda: outputs.lifecycle.count(("standby", "counter")) == 2, "both to stand by first")
        await until(lambda: ("started", "counter") in outputs.lifecycle, "one instance to start")
        source = await feed(config)
        await until(lambda: len(outputs.payloads) >= 200, "200 events counted")
        hosts.alive()
        active = {int(p["pid"]) for p in outputs.payloads}
        assert len(active) == 1, "exactly one instance handles events"
        name = next(n for n, p in processes.items() if p.pid in active)
        standby = processes["b" if name == "a" else "a"]
        assert outputs.lifecycle.count(("started", "counter")) == 1, "the standby did not start"
        hosts.kill(name)
        await until(lambda: standby.pid in outputs.by_pid(), "the standby to take over and count", 120)
        resumed = next(p for p in outputs.payloads if int(p["pid"]) == standby.pid)
        assert resumed["count"] > 1, "it counts on from the stored state, not from 0"
        await until(lambda: any(p["count"] == total for p in outputs.payloads), "every event counted", 120)
        hosts.alive()
        assert ("takeover", "counter") in outputs.lifecycle
    finally:
        if source is not None:
            await source.stop()
        hosts.close()
        await outputs.close()
    last = [p for p in outputs.payloads if int(p["pid"]) == standby.pid][-1]
    assert last["count"] == total and last["n"] == total - 1
    snapshot = await stored_state(nats_server, "counter")
    assert snapshot["state"]["count"] == total, "each event applied once: no gap, no repeat in the state"
    assert snapshot["state"]["gaps"] == snapshot["state"]["repeats"] == 0
    assert snapshot["state"]["total"] == sum(range(total))


async def stored_state(server: NatsServer, bot_id: str) -> dict[str, Any]:
    connection = await nats.connect(server.url)
    try:
        kv = await connection.jetstream().key_value("citarion-state")
        data: dict[str, Any] = json.loads((await kv.get(bot_id)).value or b"{}")
        return data
    finally:
        await connection.close()


# -- in one process: a clean stop, a reload ----------------------------------------------------------


def counted(host: Host, bot_id: str = "counter") -> int:
    bot = host.runners[bot_id].bot
    return int(bot.stats()["count"]) if bot is not None else -1


async def test_a_clean_stop_hands_the_seat_to_the_standby_with_the_final_snapshot(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Two hosts in this process: the active one stops (drained, its final snapshot written, its seat
    released); the standby takes the seat at its next look, from that snapshot, and counts on."""
    total = 400
    path = write(
        tmp_path / "host.toml",
        FAST_RESTARTS,
        nats_backend(nats_server, "handover"),
        numbers(total, pace_s=0.005),
        replicated("counter", "Counter"),
    )

    async def host(*bots: str) -> Host:
        started = Host(load_config(path), plugins=Plugins(), placement=Placement.of(bots))
        await started.start()
        return started

    first = await host("counter")
    second: Host | None = None
    source: Host | None = None
    try:
        await until(lambda: first.runners["counter"].state == "running", "the first host to take the seat")
        second = await host("counter")
        assert second.runners["counter"].state == "standby"
        source = await host("numbers")
        await until(lambda: counted(first) >= 100, "100 events counted")
        await first.stop()
        stopped_at = first.final_stats["counter"]["bot"]["count"]
        assert stopped_at < total, "stopped mid-run"
        standby = second
        await until(lambda: standby.runners["counter"].state == "running", "the standby to take the seat")
        assert counted(standby) >= stopped_at, "it counts on from the final snapshot, not from 0"
        await until(lambda: counted(standby) == total, "every event counted", 120)
        figures = standby.runners["counter"].bot.stats()  # type: ignore[union-attr]
        assert figures["gaps"] == figures["repeats"] == 0 and figures["total"] == sum(range(total))
        assert standby.stats()["replicas"]["counter"]["takeovers"] == 0, "a released seat is free"
    finally:
        for each in (source, second, first):
            if each is not None:
                await each.stop()


async def test_a_reload_that_changes_a_replicated_bot_gives_its_seat_back_and_takes_it_again(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    path = write(
        tmp_path / "host.toml",
        FAST_RESTARTS,
        nats_backend(nats_server, "reload"),
        numbers(100, pace_s=0.0),
        replicated("counter", "Counter"),
    )
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    try:
        await until(lambda: counted(host) == 100, "100 events counted")
        before = host.runners["counter"]
        changed = write(
            tmp_path / "changed.toml",
            FAST_RESTARTS,
            nats_backend(nats_server, "reload"),
            numbers(100, pace_s=0.0),
            replicated("counter", "Counter", sleep_s=0.001),
        )
        diff = await host.apply(load_config(changed))
        assert [bot.id for bot in diff.restarted] == ["counter"]
        await until(lambda: host.runners["counter"].state == "running", "the seat taken again")
        assert host.runners["counter"] is not before and before.state == "stopped"
        assert counted(host) == 100, "the state came back through the store"
        assert host.runners["counter"].bot.params.sleep_s == 0.001  # type: ignore[union-attr]
    finally:
        await host.stop()
