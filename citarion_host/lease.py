"""Leases in a JetStream key-value bucket: which instance of a replicated bot may handle events.

A lease is one key (``<bot id>.<seat>``) whose value names its holder. Every write is conditional on
the revision the writer last saw (``create`` when the key is absent, ``update(last=...)`` otherwise),
so of two contenders exactly one wins, and a holder that was overtaken learns it at its next renewal.

Why a heartbeat with revision checks, not a bucket whose entries expire (``max_age``): the timing is
then the config's (``[replicas] lease_ttl_s``), not a property of a bucket created once and shared by
every host, and no server timer is involved. Time is only ever measured on one clock at a time:

* the **holder** renews every ``renew_s``; each successful renewal was sent at ``t`` and proves the
  lease its own until ``t + lease_ttl_s - renew_s`` on the holder's clock (:attr:`Lease.deadline`).
  Past that deadline without a newer success it must stop handling (the host fences the instance);
* a **contender** (standby) notes when it first saw the key's current revision; only once that same
  revision has stood for ``lease_ttl_s`` on its own clock does it try to take the key over, with
  ``update(last=that revision)``. The revision it saw was written after the holder sent it, so the
  takeover comes at least ``lease_ttl_s`` after that send, ``renew_s`` after the holder fenced itself
  (clocks that run at the same rate are all this assumes; no synchronised wall clocks).

A holder that stops cleanly deletes its key (conditionally), so a contender takes over at its next look
instead of after ``lease_ttl_s``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from .bus.config import NatsSettings
from .bus.nats.stream import ensure_bucket

__all__ = ["Lease", "LeaseBucket", "LeaseTiming", "holder_id", "open_lease_bucket"]

log = logging.getLogger("citarion_host.lease")

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """``[replicas] lease_ttl_s`` and ``renew_s`` (``renew_s`` at most half the ttl, checked there)."""

    ttl_s: float
    renew_s: float

    @property
    def valid_s(self) -> float:
        """How long after sending a successful renewal the holder may go on handling events."""
        return self.ttl_s - self.renew_s


@dataclass(slots=True)
class Lease:
    """A lease this process holds: its key, the revision it wrote last, and until when it may act."""

    key: str
    revision: int
    deadline: float  # on the holder's clock: past it, without a newer renewal, the holder is fenced
    took_over: str | None = None  # the holder it took the key from (None: the key was free)


def holder_id(host: str) -> str:
    """A name for one contender, unique across processes and activations (``host/pid/random``)."""
    return f"{host}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


@dataclass(slots=True)
class _Seen:
    revision: int
    since: float  # when this contender first saw that revision, on its own clock


@dataclass
class LeaseBucket:
    """Acquire, renew and release leases for one holder in one bucket (see the module docstring)."""

    kv: KeyValue
    timing: LeaseTiming
    holder: str
    clock: Clock = time.monotonic
    _seen: dict[str, _Seen] = field(default_factory=dict)

    def _value(self, key: str) -> bytes:
        return json.dumps({"holder": self.holder, "key": key}).encode()

    async def holder_of(self, key: str) -> str | None:
        """Who holds ``key`` now, as the bucket says (None: nobody)."""
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:  # nats-py raises it for a deleted key too
            return None
        return _holder(entry.value)

    async def acquire(self, key: str) -> Lease | None:
        """Take ``key`` if it is free or its revision has stood still for ``ttl_s`` since this contender
        first saw it; None if another holder has it (or won the race). NATS errors are raised."""
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            sent = self.clock()
            try:
                revision = await self.kv.create(key, self._value(key))
            except KeyWrongLastSequenceError:
                return None  # another contender created it first
            self._seen.pop(key, None)
            return Lease(key, revision, sent + self.timing.valid_s)
        revision = entry.revision or 0  # a value read back always has its revision
        seen = self._seen.get(key)
        now = self.clock()
        if seen is None or seen.revision != revision:
            self._seen[key] = _Seen(revision, now)
            return None
        if now - seen.since < self.timing.ttl_s:
            return None
        sent = self.clock()
        try:
            new = await self.kv.update(key, self._value(key), last=revision)
        except KeyWrongLastSequenceError:
            self._seen.pop(key, None)  # renewed (or taken) meanwhile: watch the new revision
            return None
        self._seen.pop(key, None)
        return Lease(key, new, sent + self.timing.valid_s, took_over=_holder(entry.value) or "?")

    async def renew(self, lease: Lease) -> bool:
        """Write ``lease`` again on its last revision: True and a later deadline, or False when another
        holder has the key now (or it is gone). NATS errors (a timeout) are raised: the caller retries
        until the deadline, and fences at it."""
        sent = self.clock()
        try:
            lease.revision = await self.kv.update(lease.key, self._value(lease.key), last=lease.revision)
        except KeyWrongLastSequenceError:
            return False
        lease.deadline = sent + self.timing.valid_s
        return True

    async def release(self, lease: Lease) -> bool:
        """Delete ``lease``'s key if this holder still has it (a clean stop: a standby takes over at its
        next look). False if it was not ours any more, or the bucket could not be reached."""
        lease.deadline = 0.0
        try:
            await self.kv.delete(lease.key, last=lease.revision)
        except KeyWrongLastSequenceError:
            return False
        except (NatsError, TimeoutError) as exc:
            log.warning("could not release a lease", extra={"key": lease.key, "error": repr(exc)})
            return False
        return True


def _holder(value: bytes | None) -> str | None:
    try:
        data: Any = json.loads(value or b"")
    except ValueError:
        return None
    holder = data.get("holder") if isinstance(data, dict) else None
    return holder if isinstance(holder, str) else None


async def open_lease_bucket(nc: Client, settings: NatsSettings, bucket: str) -> KeyValue:
    """Bind to ``bucket``, creating it when missing (one value per key, replicas and storage as the
    event stream, like the state bucket)."""
    kv = await ensure_bucket(
        nc,
        settings,
        bucket,
        description="citarion-host replica leases (docs/deploy.md)",
        purpose="for replica leases",
    )
    assert kv is not None, "created when missing"
    return kv
