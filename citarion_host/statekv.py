"""Bot snapshots in a JetStream key-value bucket: one key per bot id, the latest value only.

The bucket is created like the event stream: when missing, with the replicas and the storage type of
``[backend.nats]``; an existing bucket is used as it is. A put is atomic per key on the server, and in a
cluster it is replicated before it is acknowledged, so a snapshot survives the host and a server.

It uses the bus's own NATS connection (the host's user may use ``$KV.<bucket>.>`` and the bucket's
stream, ``docs/nats-auth.md``): no second connection, and the snapshot writes share its reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import (
    KeyDeletedError,
    KeyNotFoundError,
    NoKeysError,
    NoStreamResponseError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue

from .bus.config import NatsSettings
from .bus.nats.stream import ensure_bucket
from .errors import StateError

__all__ = ["KvStore", "open_kv_store"]

log = logging.getLogger("citarion_host.state")

T = TypeVar("T")

#: Errors that mean "no answer yet", not "no": a bucket's replicas electing a leader (a new bucket in
#: a cluster, a node lost) answer nothing for a few seconds. Reads and puts of a whole value are
#: idempotent, so they are retried within :data:`RETRY_BUDGET_S`. A put is a JetStream publish, and
#: nats-py words "no responders" to a publish as ``NoStreamResponseError`` (seen in
#: ``tests/test_cluster_kill.py`` after the host's node was killed: every snapshot after the kill
#: failed at once, the final one included, instead of waiting the election out).
_TRANSIENT = (NatsTimeoutError, NoRespondersError, NoStreamResponseError, ServiceUnavailableError)

#: How long a state read or write keeps retrying a transient error (docs/limits.md).
RETRY_BUDGET_S = 30.0


class KvStore:
    """A :class:`~citarion_host.statestore.StateStore` over one key-value bucket."""

    def __init__(self, kv: KeyValue, bucket: str, max_payload: int) -> None:
        self._kv = kv
        self.bucket = bucket
        self.where = f"kv {bucket}"
        self.max_payload = max_payload

    async def _retrying(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        """``operation``, again after a transient error until :data:`RETRY_BUDGET_S` has passed."""
        deadline = time.monotonic() + RETRY_BUDGET_S
        delay = 0.1
        while True:
            try:
                return await operation()
            except _TRANSIENT as exc:
                if time.monotonic() + delay > deadline:
                    raise
                if delay == 0.1:  # one line per operation, not one per retry
                    log.warning(
                        "state store not answering yet: retrying", extra={"what": what, "error": repr(exc)}
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def load(self, bot_id: str) -> bytes | None:
        try:
            entry = await self._retrying(lambda: self._kv.get(bot_id), f"read {bot_id!r}")
        except (KeyNotFoundError, KeyDeletedError):
            return None
        except NatsError as exc:
            raise StateError(f"bot {bot_id!r}: cannot read its state from {self.where}: {exc!r}") from exc
        return entry.value

    async def save(self, bot_id: str, data: bytes) -> None:
        if len(data) > self.max_payload:
            raise StateError(
                f"bot {bot_id!r}: its snapshot is {len(data):,} bytes, more than the NATS server's"
                f" max_payload ({self.max_payload:,}): raise max_payload on the servers, keep less state,"
                ' or use [state] store = "dir"'
            )
        try:
            await self._retrying(lambda: self._kv.put(bot_id, data), f"write {bot_id!r}")
        except NatsError as exc:
            raise StateError(f"bot {bot_id!r}: cannot write its state to {self.where}: {exc!r}") from exc

    async def delete(self, bot_id: str) -> bool:
        if await self.load(bot_id) is None:
            return False
        await self._kv.purge(bot_id)  # purge, not delete: no history of the old state is kept
        return True

    async def keys(self) -> list[str]:
        try:
            return sorted(await self._kv.keys())
        except NoKeysError:
            return []


async def open_kv_store(
    nc: Client, settings: NatsSettings, bucket: str, *, create: bool = True
) -> KvStore | None:
    """Bind to ``bucket``, creating it when missing (replicas and storage as the event stream); with
    ``create`` false a missing bucket is None (reading tools must not create one)."""
    kv = await ensure_bucket(
        nc,
        settings,
        bucket,
        description="citarion-host bot state snapshots (docs/state.md)",
        purpose="for bot state",
        create=create,
    )
    if kv is None:
        return None
    return KvStore(kv, bucket, nc.max_payload)
