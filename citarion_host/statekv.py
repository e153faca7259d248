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
from nats.js import JetStreamManager
from nats.js.errors import (
    APIError,
    KeyDeletedError,
    KeyNotFoundError,
    NoKeysError,
    NoStreamResponseError,
    NotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue

from .bus.config import NatsSettings
from .bus.nats.stream import INSUFFICIENT_RESOURCES, ensure_bucket
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
    """A :class:`~citarion_host.statestore.StateStore` over one key-value bucket.

    A bucket gone from the server (deleted; memory storage after a server restart) is made again at
    the first write that finds it gone, loudly (an error log, :attr:`remade`): the snapshots written
    from then on are kept, where retrying a write to nothing would hold every snapshot, and the host's
    stop, for :data:`RETRY_BUDGET_S` each."""

    def __init__(
        self,
        kv: KeyValue,
        bucket: str,
        max_payload: int,
        remake: Callable[[], Awaitable[KeyValue | None]] | None = None,
        jsm: JetStreamManager | None = None,
    ) -> None:
        self._kv = kv
        self.bucket = bucket
        self.where = f"kv {bucket}"
        self.max_payload = max_payload
        self._remake = remake
        self._jsm = jsm
        #: Times the bucket was found gone and made again.
        self.remade = 0

    async def _gone(self) -> bool:
        """Is the bucket's stream gone from the server? (Not answering is not gone.) Only asked by a
        store that may make it again."""
        if self._jsm is None or self._remake is None:
            return False
        try:
            await self._jsm.stream_info(f"KV_{self.bucket}")
        except NotFoundError:
            return True
        except (NatsError, TimeoutError):
            return False
        return False

    async def _make_again(self) -> bool:
        assert self._remake is not None  # _gone() says so only with it
        kv = await self._remake()
        if kv is None:
            return False
        self._kv = kv
        self.remade += 1
        log.error(
            "the state bucket was gone from the server: made again (the snapshots before it are lost;"
            " each bot's next one is kept)",
            extra={"bucket": self.bucket},
        )
        return True

    async def _retrying(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        """``operation``, again after a transient error until :data:`RETRY_BUDGET_S` has passed; at
        once after making the bucket again when "no stream answered" meant it is gone."""
        deadline = time.monotonic() + RETRY_BUDGET_S
        delay = 0.1
        remade = False
        while True:
            try:
                return await operation()
            except _TRANSIENT as exc:
                if isinstance(exc, ServiceUnavailableError) and exc.err_code == INSUFFICIENT_RESOURCES:
                    raise  # no storage left on the server: waiting 30 s per bot would not make any
                if isinstance(exc, NoStreamResponseError) and not remade and await self._gone():
                    remade = await self._make_again()
                    if remade:
                        continue
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
            raise StateError(f"bot {bot_id!r}: cannot read its state from {self.where}: {_why(exc)}") from exc
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
            raise StateError(f"bot {bot_id!r}: cannot write its state to {self.where}: {_why(exc)}") from exc

    async def delete(self, bot_id: str) -> bool:
        if await self.load(bot_id) is None:
            return False
        await self._kv.purge(bot_id)  # purge, not delete: no history of the old state is kept
        return True

    def release(self, bot_id: str | None = None) -> None:
        """Nothing held: replicas fence their writers with leases (``replicas.py``)."""

    async def keys(self) -> list[str]:
        try:
            return sorted(await self._kv.keys())
        except NoKeysError:
            return []


async def open_kv_store(
    nc: Client, settings: NatsSettings, bucket: str, *, create: bool = True
) -> KvStore | None:
    """Bind to ``bucket``, creating it when missing (replicas and storage as the event stream); with
    ``create`` false a missing bucket is None (reading tools must not create one, nor make it again)."""

    async def bind(make: bool = True) -> KeyValue | None:
        return await ensure_bucket(
            nc,
            settings,
            bucket,
            description="citarion-host bot state snapshots (docs/state.md)",
            purpose="for bot state",
            create=make,
        )

    kv = await bind(create)
    if kv is None:
        return None
    if not create:  # a reading tool: a bucket found gone is not made again
        return KvStore(kv, bucket, nc.max_payload)
    return KvStore(kv, bucket, nc.max_payload, bind, nc.jsm(timeout=settings.api_timeout_s))


def _why(exc: NatsError) -> str:
    """What went wrong, readable: a JetStream API error's code and description (its ``repr`` shows
    neither: ``ServiceUnavailableError()``), else the error's ``repr``."""
    return str(exc) if isinstance(exc, APIError) else repr(exc)
