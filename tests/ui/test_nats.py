"""The dashboard on NATS JetStream: ``/readyz`` follows the connection (a real nats-server killed and
brought back), and SSE ids are the stream's sequence numbers, so a browser resumes by them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from httpx_sse import aconnect_sse

from citarion_host.events import make_event
from citarion_host.natsserver import NatsServer

from .conftest import Served, close, serve, until, write_config

pytestmark = pytest.mark.nats

ON_NATS = """
[host]
name = "ui-nats"

[ui]
port = 0

[backend]
type = "nats"

[backend.nats]
servers = ["{url}"]
stream = "ui-readyz"
storage = "memory"
reconnect_wait_s = 0.1
reconnect_wait_max_s = 0.3
connect_timeout_s = 1.0

[[bots]]
id = "watch"
code = "ORA"
plugin = "tests.host_bots:Recorder"
subscribe = ["analytics.>"]
"""


async def readiness(served: Served) -> tuple[int, dict[str, object]]:
    async with served.client() as client:
        response = await client.get("/readyz")
    return response.status_code, response.json()


async def wait_ready(served: Served, ready: bool, timeout: float = 20.0) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status, body = await readiness(served)
        if (status == 200) == ready:
            return body
        assert loop.time() < deadline, f"/readyz still {status} {body} after {timeout}s"
        await asyncio.sleep(0.1)


async def test_readyz_follows_the_nats_connection(nats_server: NatsServer, tmp_path: Path) -> None:
    # file storage: the stream outlives the restart below (memory storage: the next test)
    config = ON_NATS.format(url=nats_server.url).replace('storage = "memory"', 'storage = "file"')
    served = await serve(write_config(tmp_path, config))
    try:
        assert (await wait_ready(served, True))["bus"] == {"backend": "nats", "connected": True}
        nats_server.kill()
        down = await wait_ready(served, False)
        assert any("not connected (disconnected)" in str(reason) for reason in down["reasons"])  # type: ignore[attr-defined]
        async with served.client() as client:
            assert (await client.get("/healthz")).status_code == 200  # alive all the same
            assert 'citarion_bus_connected{backend="nats"} 0.0' in (await client.get("/metrics")).text
        nats_server.restart()
        up = await wait_ready(served, True)
        assert up["reasons"] == []
    finally:
        await close(served)


async def test_readyz_says_when_the_server_came_back_without_the_stream(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """Memory storage does not outlive a server restart: connected again, the host cannot store or read
    anything, and /readyz says so and why (it used to answer 200 while every consumer failed)."""
    # What it publishes meanwhile cannot be stored: each publish gives up after publish_timeout_s, and
    # the stop waits for them at most drain_timeout_s (short here, not to wait for nothing).
    config = (
        ON_NATS.format(url=nats_server.url)
        .replace("[host]\n", "[host]\ndrain_timeout_s = 1\n")
        .replace("[backend.nats]\n", "[backend.nats]\npublish_timeout_s = 1.0\n")
    )
    served = await serve(write_config(tmp_path, config))
    try:
        await wait_ready(served, True)
        nats_server.kill()
        await wait_ready(served, False)
        nats_server.restart()
        bus = served.host.bus
        await until(lambda: bus.connection_problems() != [], 20, "the stream reported gone")
        status, body = await readiness(served)
        assert status == 503 and body["bus"] == {"backend": "nats", "connected": True}
        assert body["reasons"] == [  # connected, and still not ready: the stream is gone
            "JetStream stream 'ui-readyz' is gone from the server (storage 'memory': memory storage does"
            " not outlive a server restart; or it was deleted): nothing can be stored or read until it is"
            " there again; restart the host to create it anew"
        ]
    finally:
        await close(served)


async def test_sse_ids_are_stream_sequences_and_resume_by_them(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    served = await serve(write_config(tmp_path, ON_NATS.format(url=nats_server.url)))
    try:
        feed = served.dashboard.feed
        assert feed.stats()["positions"] == "stream sequence"
        events = [make_event("analytics.number.emitted", {"n": n}, source="HOST") for n in range(6)]
        for event in events:
            await served.host.bus.publish(event)
        await until(lambda: feed.events >= 6 + 1, 10, "the feed to read the stream")  # + watch's start report
        retained = {
            feed.ring.get(i).event.id: feed.ring.get(i).position
            for i in range(feed.ring.start, feed.ring.end)
        }
        positions = [retained[e.id] for e in events]
        assert positions == sorted(positions) and len(set(positions)) == 6
        got = []
        async with (
            served.client() as client,
            aconnect_sse(client, "GET", "/events", headers={"Last-Event-ID": str(positions[2])}) as source,
        ):
            async for sse in source.aiter_sse():
                if sse.data and sse.event == "message" and sse.json()["topic"] == "analytics.number.emitted":
                    got.append((int(sse.id), sse.json()["id"]))
                if len(got) == 3:
                    break
        assert got == [(positions[i], events[i].id) for i in range(3, 6)]
    finally:
        await close(served)
