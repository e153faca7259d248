"""The SSE feed over a real server: ids, topic filters, resume after a cut with no gap and no
duplicate, twenty concurrent browsers losing nothing, and a lagging one told what it lost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from citarion_host.events import make_event

from .conftest import Served, close, serve, until, write_config

QUIET = """
[host]
name = "sse"
[ui]
port = 0
retain_events = {retain}
"""


async def publish(
    served: Served, count: int, topic: str = "analytics.number.emitted", start: int = 0
) -> list[str]:
    ids = []
    for n in range(start, start + count):
        event = make_event(topic, {"n": n}, source="HOST")
        await served.host.bus.publish(event)
        ids.append(event.id)
    await served.host.bus.settle()
    return ids


async def collect(
    served: Served, want: int, *, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> list[ServerSentEvent]:
    """Read one stream until ``want`` data events arrived (other kinds are kept too)."""
    got: list[ServerSentEvent] = []
    async with (
        served.client() as client,
        aconnect_sse(client, "GET", "/events", params=params, headers=dict(headers or {})) as source,
    ):
        async for sse in source.aiter_sse():
            if not sse.data:  # "retry:" alone: no event, by the SSE rules
                continue
            got.append(sse)
            if sum(1 for s in got if s.event == "message") >= want:
                break
    return got


@pytest.fixture
async def small(tmp_path: Path) -> Any:
    served = await serve(write_config(tmp_path, QUIET.format(retain=1000)))
    yield served
    await close(served)


async def test_ids_are_positions_and_the_topic_filter_applies(small: Served) -> None:
    reader = asyncio.create_task(collect(small, 3, params={"topic": "analytics.*.kept"}))
    await until(lambda: bool(small.dashboard.streams.open))
    await publish(small, 2, "analytics.number.dropped")
    kept = await publish(small, 3, "analytics.number.kept")
    got = [s for s in await asyncio.wait_for(reader, 10) if s.event == "message"]
    assert [s.json()["id"] for s in got] == kept
    positions = [int(s.id) for s in got]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert positions[0] > 2  # the two filtered-out events were numbered too


async def test_a_bad_pattern_is_one_clear_400(small: Served) -> None:
    async with small.client() as client:
        response = await client.get("/events", params={"topic": "a.>.b"})
    assert response.status_code == 400 and "'>' must be the last token" in response.text


async def test_resume_after_a_cut_loses_and_doubles_nothing(small: Served) -> None:
    before = await publish(small, 5)
    reader = asyncio.create_task(collect(small, 5, headers={"Last-Event-ID": "0"}))
    got = [s for s in await asyncio.wait_for(reader, 10) if s.event == "message"]
    assert [s.json()["id"] for s in got] == before
    last_id = got[-1].id
    # a stream is open and cut server-side; three events are published while no stream is open
    streams = small.dashboard.streams
    opened = streams.opened
    streaming = asyncio.create_task(collect(small, 10**9))
    await until(lambda: streams.opened == opened + 1)
    small.dashboard.feed.cut()
    await asyncio.wait_for(streaming, 5)
    assert not small.dashboard.streams.open
    missed = await publish(small, 3, start=100)
    resumed = [s for s in await collect(small, 3, headers={"Last-Event-ID": last_id}) if s.event == "message"]
    assert [s.json()["id"] for s in resumed] == missed


async def test_twenty_concurrent_streams_get_every_event(small: Served) -> None:
    readers = [asyncio.create_task(collect(small, 300)) for _ in range(20)]
    await until(lambda: len(small.dashboard.streams.open) == 20)
    sent = await publish(small, 300)
    for reader in readers:
        got = [s.json()["id"] for s in await asyncio.wait_for(reader, 30) if s.event == "message"]
        assert got == sent
    assert small.dashboard.feed.dropped == 0


async def test_a_browser_resuming_from_outside_the_window_is_told_what_it_lost(tmp_path: Path) -> None:
    served = await serve(write_config(tmp_path, QUIET.format(retain=100)))
    try:
        await publish(served, 250)  # positions 1..250; the window keeps 151..250
        got = await collect(served, 100, headers={"Last-Event-ID": "120"})
        assert got[0].event == "gap" and got[0].json() == {"lost": 30}
        messages = [s for s in got if s.event == "message"]
        assert [int(s.id) for s in messages] == list(range(151, 251))
        assert served.dashboard.feed.dropped == 30
        async with served.client() as client:
            metrics = (await client.get("/metrics")).text
        assert "citarion_ui_sse_events_dropped_total 30.0" in metrics
    finally:
        await close(served)


async def test_streams_end_when_the_server_stops(tmp_path: Path) -> None:
    served = await serve(write_config(tmp_path, QUIET.format(retain=100)))
    reader = asyncio.create_task(collect(served, 10**9))
    await until(lambda: bool(served.dashboard.streams.open))
    await close(served)
    await asyncio.wait_for(reader, 5)
    with pytest.raises(httpx.ConnectError):
        async with served.client() as client:
            await client.get("/healthz")
