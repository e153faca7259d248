"""Read stored events back out of the JetStream stream (``citarion-host replay``).

``replay`` is read-only: it never creates or changes the stream, and it reads through an ephemeral
pull consumer without acks, so it does not disturb any subscriber. It yields the events stored from
``since`` (or ``start_sequence``) up to ``until`` (or up to what was stored when it started) and then
stops, so it suits exports and post-mortems. Why a pull consumer here when subscriptions use push ones:
a bounded read wants to ask for batches and to know when it has reached the end (``num_pending``),
and pull is fast enough for an export (docs/performance.md, "Design measurements").
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import TextIO

import msgspec
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api
from nats.js.errors import NotFoundError

from .bus.config import NatsSettings
from .bus.nats.connection import connect
from .errors import BusError
from .events import Event, EventCatalog, InvalidEventError, catalog, encode_event
from .redact import mask_text
from .topics import split_pattern

__all__ = ["parse_time", "replay"]

log = logging.getLogger("citarion_host.replay")

_BATCH = 256
_DURATION = re.compile(r"^(?P<amount>\d+(?:\.\d+)?)(?P<unit>ms|s|m|h|d|w)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """``15m``/``2h``/``1d`` (that long before ``now``) or an ISO 8601 time (UTC if no offset is given)."""
    text = text.strip()
    found = _DURATION.match(text)
    if found:
        seconds = float(found.group("amount")) * _UNITS[found.group("unit")]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use a duration like 15m, 2h, 1d or an ISO time like 2024-05-01T12:00:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def replay(
    settings: NatsSettings,
    topic_pattern: str,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    start_sequence: int | None = None,
    catalog_: EventCatalog | None = None,
) -> AsyncGenerator[Event, None]:
    """Yield the stored events matching ``topic_pattern``, oldest first.

    ``since``/``until`` compare with the time the stream stored each event; without ``since`` (and
    without ``start_sequence``) the whole stream is read. Messages on the stream that are not valid
    events are logged and skipped (a subscriber dead-letters them; replay only reads).
    """
    split_pattern(topic_pattern)
    if since is not None and start_sequence is not None:
        raise ValueError("give since or start_sequence, not both")
    since, until = _aware(since), _aware(until)
    decode = (catalog_ or catalog).decode
    nc = Client()
    await connect(nc, settings, name="citarion-host replay", allow_reconnect=False)
    try:
        js = nc.jetstream(timeout=settings.api_timeout_s)
        try:
            info = await js.stream_info(settings.stream)
        except NotFoundError:
            servers = mask_text(", ".join(settings.servers))
            raise BusError(f"no JetStream stream {settings.stream!r} on {servers}") from None
        if info.state.messages == 0:
            return
        if start_sequence is not None:
            policy = api.DeliverPolicy.BY_START_SEQUENCE
        elif since is not None:
            policy = api.DeliverPolicy.BY_START_TIME
        else:
            policy = api.DeliverPolicy.ALL
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=60.0,
            mem_storage=True,
            num_replicas=1,
            deliver_policy=policy,
            opt_start_seq=start_sequence,
            opt_start_time=since.astimezone(UTC) if since is not None else None,
        )
        subscription = await js.pull_subscribe(topic_pattern, stream=settings.stream, config=config)
        consumer = await subscription.consumer_info()
        try:
            if consumer.num_pending == 0:
                return
            end_sequence = info.state.last_seq  # what was stored when we started: the natural end
            while True:
                try:
                    batch = await subscription.fetch(_BATCH, timeout=2.0)
                except NatsTimeoutError:
                    return  # nothing (more) matches
                for msg in batch:
                    meta = msg.metadata
                    if meta.sequence.stream > end_sequence or (until is not None and meta.timestamp > until):
                        return
                    try:
                        event = decode(msg.data)
                    except InvalidEventError as exc:
                        log.warning(
                            "skipping a stored message that is not a valid event",
                            extra={
                                "sequence": meta.sequence.stream,
                                "subject": msg.subject,
                                "error": str(exc),
                            },
                        )
                    else:
                        yield event
                    if meta.num_pending == 0:
                        return
        finally:
            try:
                await subscription.unsubscribe()
                await js.delete_consumer(settings.stream, consumer.name)
            except Exception as exc:  # the consumer expires on its own (inactive_threshold)
                log.debug("replay consumer cleanup failed", extra={"error": repr(exc)})
    finally:
        await nc.close()


def _aware(moment: datetime | None) -> datetime | None:
    """Naive times are taken as UTC (the stream's clock)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


async def print_events(
    events: AsyncGenerator[Event, None], *, as_json: bool, out: TextIO | None = None
) -> int:
    """Print ``events`` (closing the iterator when done): one wire-JSON line each with ``as_json``, else
    ``time topic source priority id payload``. Returns how many were printed."""
    out = out or sys.stdout
    count = 0
    async with contextlib.aclosing(events):
        async for event in events:
            count += 1
            if as_json:
                out.write(encode_event(event).decode() + "\n")
                continue
            stamp = datetime.fromtimestamp(event.timestamp / 1000, UTC).isoformat(timespec="milliseconds")
            payload = json.dumps(msgspec.to_builtins(event.payload), separators=(",", ":"))
            print(f"{stamp} {event.topic} {event.source} {event.priority} {event.id} {payload}", file=out)
    return count
