"""Killing one node of a 3-node JetStream cluster mid-run loses no acknowledged event (issue 16).

A real host (``Host``, in this process, from a TOML config as ``citarion-host run`` loads it) on a
loopback cluster of three ``nats-server`` processes, the event stream at replicas 3: a feed publishes
numbered events one by one, two bots read them through durable consumers. Once the bots are well into
the run, one node gets SIGKILL: the stream's leader, or the node the host is connected to (which then
has to reconnect to another one). The run goes on and completes. Then, counted by event id:

* every event the feed was told was published (``ctx.publish`` returned, and no ``system.bus.unstored``
  report took it back) is in the stream, once (the publisher resends with the same ``Nats-Msg-Id``);
* every event of the feed that the stream holds was delivered to each bot, at least once;
* with a stateful bot (the variant ``stateful``), its state key-value bucket (replicas 3, from
  ``[backend.nats] replicas``) survives too: after the kill the host still writes snapshots, and the
  final one, read back from a surviving node, is the bot's final state.

No timing is asserted: the waits are generous bounds for a loaded machine, and a run that ends early
(a lost event is never delivered) fails by naming what is missing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from citarion_host.bus.nats.stream import retry_api
from citarion_host.host import Host
from citarion_host.natsserver import NatsCluster, NatsServer
from citarion_host.plugins import Plugins
from citarion_host.settings import load_config
from tests.bus.conftest import eventually
from tests.host_bots import Ledger, Recorder
from tests.state_bots import SeenTally, Tally

pytestmark = [pytest.mark.nats, pytest.mark.slow]

STREAM = "cluster-kill"
BUCKET = "cluster-kill-state"
TOPIC = "analytics.number.emitted"
#: (events, seconds between two publishes, events the bots have seen when the node is killed: well
#: into the run). A flat-out run (20,000 events, no pause) also stalled before the sequencer kept a
#: redelivery of a waiting event once (`tests/bus/test_sequencer.py`); it passed after the fix but is
#: not run here: on the shared 2-core machine it failed once in about a dozen runs for a reason not
#: yet found, and a test that fails by chance would block every change.
PACED = (3_000, 0.002, 600)
WAIT_S = 180.0  # bounds for a loaded 2-core machine, never a figure the test is about


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    for table in (Ledger.posted, Ledger.failed, Recorder.seen, Recorder.instances, SeenTally.seen):
        table.clear()
    Tally.calls = 0
    yield


def config(cluster: NatsCluster, *, stateful: bool, count: int = PACED[0], pace_s: float = PACED[1]) -> str:
    """The feed and two durable readers on the cluster; ``stateful``: one reader keeps state (KV)."""
    servers = ", ".join(f'"{url}"' for url in cluster.urls)
    second = 'plugin = "tests.state_bots:SeenTally"' if stateful else 'plugin = "tests.host_bots:Recorder"'
    return f"""
[host]
progress_interval_s = 0
summary = false
drain_timeout_s = 30

[backend]
type = "nats"
[backend.nats]
servers = [{servers}]
stream = "{STREAM}"
replicas = 3
durable_start = "all"
reconnect_wait_s = 0.1
reconnect_wait_max_s = 1.0
publish_timeout_s = 120
ack_wait_s = 5
api_timeout_s = 10

[state]
bucket = "{BUCKET}"
every_events = 200
every_s = 0.2
max_share = 1.0

[[bots]]
id = "feed"
code = "ORA"
plugin = "tests.host_bots:Ledger"
publish = ["analytics.number.>"]
[bots.params]
count = {count}
pace_s = {pace_s}

[[bots]]
id = "reader"
code = "ORA"
plugin = "tests.host_bots:Recorder"
subscribe = ["analytics.number.>"]
durable = true

[[bots]]
id = "second"
code = "ORA"
{second}
subscribe = ["analytics.number.>"]
durable = true
"""


def seen_ids(bot_id: str) -> list[str]:
    if bot_id in Recorder.seen:
        return [event.id for event in Recorder.seen[bot_id]]
    return list(SeenTally.seen.get(bot_id, []))


async def stream_leader(urls: list[str]) -> str:
    """The server name of the event stream's leader."""
    connection = await nats.connect(urls)
    try:
        js = connection.jetstream(timeout=30)
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while True:  # right after a kill the stream may still be electing its leader
            info = await retry_api(lambda: js.stream_info(STREAM), WAIT_S)
            if info.cluster is not None and info.cluster.leader:
                return str(info.cluster.leader)
            assert asyncio.get_running_loop().time() < deadline, f"no stream leader: {info}"
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def stored_feed(urls: list[str]) -> list[str]:
    """Ids of the feed's events the stream holds, in stream order (read from the surviving nodes)."""
    connection = await nats.connect(urls)
    try:
        # generous API timeouts and retries: the cluster just lost a node and may still be electing
        js = connection.jetstream(timeout=30)
        info = await retry_api(lambda: js.stream_info(STREAM, subjects_filter=TOPIC), WAIT_S)
        count = (info.state.subjects or {}).get(TOPIC, 0)
        sub = await retry_api(lambda: js.subscribe(TOPIC, ordered_consumer=True, stream=STREAM), WAIT_S)
        ids = [json.loads((await sub.next_msg(timeout=30)).data)["id"] for _ in range(count)]
        await sub.unsubscribe()
        return ids
    finally:
        await connection.close()


async def snapshot_record(urls: list[str], bot_id: str) -> tuple[dict[str, Any], int, int]:
    """The bot's snapshot in the state bucket (decoded), its revision, and the bucket's replicas."""
    connection = await nats.connect(urls)
    try:
        js = connection.jetstream(timeout=30)
        kv = await retry_api(lambda: js.key_value(BUCKET), WAIT_S)
        entry = await retry_api(lambda: kv.get(bot_id), WAIT_S)
        status = await retry_api(kv.status, WAIT_S)
        assert entry.value is not None and entry.revision is not None
        return json.loads(entry.value), entry.revision, status.stream_info.config.num_replicas or 0
    finally:
        await connection.close()


def choose_victim(cluster: NatsCluster, leader: str, connected: str | None, victim: str) -> NatsServer:
    if victim == "stream leader":
        return next(server for server in cluster if server.server_name == leader)
    return next(server for server in cluster if server.url == connected)


@pytest.mark.parametrize(
    ("victim", "stateful", "pace"),
    [
        ("stream leader", False, PACED),
        ("stream leader", True, PACED),
        ("host's node", False, PACED),
        ("host's node", True, PACED),
    ],
    ids=["stream leader-stateless", "stream leader-stateful", "host's node-stateless", "host's node-stateful"],
)  # fmt: skip
async def test_killing_a_cluster_node_mid_run_loses_no_acknowledged_event(
    nats_cluster: NatsCluster, tmp_path: Path, victim: str, stateful: bool, pace: tuple[int, float, int]
) -> None:
    count, pace_s, kill_at = pace
    path = tmp_path / "host.toml"
    path.write_text(config(nats_cluster, stateful=stateful, count=count, pace_s=pace_s))
    host = Host(load_config(path), plugins=Plugins())
    async with host:
        bus: Any = host.bus
        await eventually(
            lambda: min(len(seen_ids("reader")), len(seen_ids("second"))) >= kill_at,
            timeout=WAIT_S,
            what=f"both readers to see {kill_at} events",
        )
        leader = await stream_leader(nats_cluster.urls)
        killed = choose_victim(nats_cluster, leader, bus.stats()["nats"]["server"], victim)
        revision_at_kill = (await snapshot_record(nats_cluster.urls, "second"))[1] if stateful else 0
        posted_at_kill = len(Ledger.posted.get("feed", []))
        await asyncio.to_thread(killed.kill)
        survivors = [server.url for server in nats_cluster if server is not killed]

        await eventually(
            lambda: len(Ledger.posted.get("feed", [])) + len(Ledger.failed.get("feed", [])) >= count,
            timeout=WAIT_S,
            what="the feed to publish every event",
        )
        await asyncio.wait_for(bus.flush(), WAIT_S)  # every post confirmed, or reported unstored
        stored = await stored_feed(survivors)
        wanted = set(stored)
        for bot_id in ("reader", "second"):
            await eventually(
                lambda bot_id=bot_id: wanted <= set(seen_ids(bot_id)),  # type: ignore[misc]
                timeout=WAIT_S,
                what=f"{bot_id} to get every stored event ({len(wanted - set(seen_ids(bot_id)))} missing)",
            )
        unstored = bus.unstored
        connected = bus.stats()["nats"]["server"]
        tally = host.runners["second"].bot if stateful else None
        new_leader = await stream_leader(survivors)
    # The host stopped cleanly (its final snapshot written): now the figures.
    acknowledged = Ledger.posted["feed"]
    assert posted_at_kill < count, "the node was killed after the feed had finished: not mid-run"
    assert connected in survivors, "the host is not connected to a surviving node"
    assert new_leader != killed.server_name
    assert Ledger.failed["feed"] == [], "a publish raised: the outage is far shorter than publish_timeout_s"
    assert unstored == 0, "a post was never confirmed by the store"
    assert len(acknowledged) == count
    missing = set(acknowledged) - wanted
    assert not missing, f"{len(missing)} acknowledged events are not in the stream after the kill"
    assert len(stored) == len(wanted) == count, "an event stored twice (the dedup window covers resends)"
    for bot_id in ("reader", "second"):
        assert wanted <= set(seen_ids(bot_id)), bot_id  # at least once, by event id
    if stateful:
        assert isinstance(tally, SeenTally)
        snapshot, revision, replicas = await snapshot_record(survivors, "second")
        assert replicas == 3
        assert revision > revision_at_kill, "no snapshot was written after the node was killed"
        assert snapshot["state"] == tally.figures(), "the stored state is not the bot's final state"
        assert snapshot["state"]["last_n"] == count - 1
        assert snapshot["state"]["count"] == len(seen_ids("second")) >= count
