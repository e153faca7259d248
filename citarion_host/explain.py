"""``citarion-host explain EVENT_ID``: an event's causes, hop by hop, back to what started them.

Every event a bot publishes while handling another carries that event's id as ``causationId``
(``lineage``), so a fill leads back to its order, the order to the decision or signal behind it, and on
to the candle that started it all. This module reads events from a run's record (``[host] record``, one
JSON event per line) or from the JetStream stream, follows the chain and prints one line per hop: topic,
source, time, data time and the payload fields that say what happened.

Events are handled as their wire JSON (plain dicts): explaining a record needs no payload types, so it
also works for events from plugins that are not installed here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bus.config import NatsSettings

__all__ = ["Chain", "describe", "follow", "load_record", "load_stream"]

Wire = dict[str, Any]


class Chain:
    """The hops from an event back to its first cause; ``end`` says why the chain stops there."""

    def __init__(self, hops: list[Wire], end: str) -> None:
        self.hops = hops
        self.end = end

    @property
    def reaches_market(self) -> bool:
        return bool(self.hops) and str(self.hops[-1].get("topic", "")).startswith("market.")


def load_record(path: str | Path) -> dict[str, Wire]:
    """Events of a JSON-lines record by id (a line that is not an event is skipped)."""
    events: dict[str, Wire] = {}
    with open(path, encoding="utf-8") as file:
        for line in file:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and isinstance(event.get("id"), str):
                events[event["id"]] = event
    return events


async def load_stream(events: AsyncIterable[Any], encode: Any) -> dict[str, Wire]:
    """Events read from the stream (``replay``), as wire dicts by id."""
    found: dict[str, Wire] = {}
    async for event in events:
        found[event.id] = json.loads(encode(event))
    return found


def follow(events: Mapping[str, Wire], event_id: str) -> Chain:
    """The chain of causes of ``event_id``; raises ``KeyError`` if the event itself is unknown."""
    hops = [events[event_id]]
    seen = {event_id}
    while True:
        cause = hops[-1].get("causationId")
        if not cause:
            return Chain(hops, "no causationId: this is where it started")
        if cause in seen:
            return Chain(hops, f"causationId {cause} loops back")
        if cause not in events:
            return Chain(hops, f"cause {cause} is not in the events read (before the record or --since?)")
        seen.add(cause)
        hops.append(events[cause])


def _time(ms: Any) -> str:
    if not isinstance(ms, int | float):
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _fields(event: Wire) -> str:
    """The payload fields that say what happened, by kind of event."""
    p = event.get("payload")
    if not isinstance(p, dict):
        return ""
    where = f"{p.get('symbol')}@{p.get('exchange')}" if "symbol" in p else ""
    entity = event.get("entity")
    if entity == "order" and "orderId" in p:
        price = p.get("averagePrice") or p.get("price")
        text = f"{p.get('side')} {p.get('quantity')} {where} {p.get('type')} {p.get('status')}"
        text += f" at {price}" if price is not None else ""
        text += f" order={p['orderId']}" + (f" bot={p['botId']}" if p.get("botId") else "")
        return text + (f" reason={p['reason']!r}" if p.get("reason") else "")
    if entity == "signal":
        return f"{p.get('direction')} {where} confidence={p.get('confidence')} entry={p.get('entryPrice')}"
    if entity == "decision":
        return (
            f"{p.get('direction')} {where} confidence={p.get('confidence')} "
            f"agreement={p.get('agreement')} sources={p.get('sources')}"
        )
    if entity == "candle":
        ohlc = f"o={p.get('open')} h={p.get('high')} l={p.get('low')} c={p.get('close')}"
        return f"{where} {p.get('interval')} {ohlc}"
    if entity == "ticker":
        return f"{where} last={p.get('last')} bid={p.get('bid')} ask={p.get('ask')}"
    if entity == "position":
        return f"{p.get('botId')} {where} qty={p.get('quantity')} realized={p.get('realizedPnl')}"
    if "message" in p:
        return f"{p.get('kind', '')} {p.get('severity', '')} {p['message']}".strip()
    scalars = [f"{k}={v}" for k, v in p.items() if isinstance(v, str | int | float | bool)][:6]
    return " ".join(scalars)


def describe(event: Wire) -> str:
    """One line: topic, source, wall time, data time, what happened, id."""
    data_time = (event.get("metadata") or {}).get("dataTime")
    return (
        f"{event.get('topic', '?'):<32} {event.get('source', '?'):<4} {_time(event.get('timestamp'))} "
        f"data {_time(data_time)}  {_fields(event)}  [{event.get('id')}]"
    )


def render(chain: Chain) -> Iterable[str]:
    """The lines ``explain`` prints: the event, then each cause (``<-``), then why it ends."""
    for index, hop in enumerate(chain.hops):
        yield ("   " if index == 0 else "<- ") + describe(hop)
    yield f"   ({len(chain.hops)} event(s); {chain.end})"


def explain_command(
    event_id: str, *, record: str | None, settings: NatsSettings | None, since: datetime | None
) -> int:
    """What ``citarion-host explain`` does; returns its exit code (0 found, 1 not found or unreadable)."""
    import asyncio
    import sys

    from .events import encode_event

    try:
        if record is not None:
            events = load_record(record)
            where = record
        else:
            from .replay import replay

            assert settings is not None, "explain reads a record or a stream"
            events = asyncio.run(load_stream(replay(settings, ">", since, None), encode_event))
            where = f"stream {settings.stream!r}"
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {record}: {exc}", file=sys.stderr)
        return 1
    if event_id not in events:
        print(f"error: no event {event_id} in {where} ({len(events)} events read)", file=sys.stderr)
        return 1
    for line in render(follow(events, event_id)):
        print(line)
    return 0
