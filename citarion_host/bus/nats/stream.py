"""JetStream stream and consumer management for the NATS backend.

The stream is created when missing. An existing stream whose configuration differs from the settings is
updated only by a host that manages it (``manage_stream = true``); any other host refuses to start with
the differences, because the stream is shared: two hosts with different ``max_age_s`` used to rewrite it
back and forth on every start. (A stream that already stores every subject a host wants, and more, is no
difference for that host.) A stream is never deleted or purged: data only goes away through the limits
the operator configured (``max_age_s``, ``max_bytes``). A difference the server cannot apply in place (the
storage type) is reported as a :class:`~citarion_host.errors.ConfigError` rather than "fixed" by
recreating the stream.

Consumers are push consumers with explicit acks. Why push and not pull: measured on the target machine,
push consumers delivered several times what pull ``fetch()`` did (docs/performance.md, "Design
measurements"), because every fetch is a request/response round trip and a Python-side batch loop. With push,
``max_ack_pending`` (set to the subscriber's backlog bound) gives the same flow control a pull batch would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError as NatsNoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamManager, api
from nats.js.errors import APIError, BucketNotFoundError, NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue

from ...errors import ConfigError, StateError
from ...topics import TopicError, contains
from ..config import NatsSettings

__all__ = [
    "INSUFFICIENT_RESOURCES",
    "ConsumerPlan",
    "consumer_config",
    "deliver_subject",
    "ensure_bucket",
    "ensure_consumer",
    "ensure_stream",
    "reduce_filters",
    "retry_api",
    "retry_budget",
    "same_filters",
    "stream_config",
    "validate_consumer_name",
]

log = logging.getLogger("citarion_host.bus.nats")

T = TypeVar("T")

#: Prefix of the deterministic deliver subjects of durable consumers (outside every event domain).
DELIVER_PREFIX = "_CIT.deliver"
#: JetStream's "insufficient resources" (code 503, like "temporarily unavailable"): the server's
#: JetStream storage limit (``max_file_store`` / ``max_memory_store``) or the account's is reached.
#: It lasts until someone frees space, so it is reported as such, not waited out like an election.
INSUFFICIENT_RESOURCES = 10023
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def validate_consumer_name(name: str, what: str = "durable name") -> str:
    """Consumer names become subject tokens: letters, digits, ``-`` and ``_`` only."""
    if not _NAME.match(name):
        raise ValueError(f"{what} {name!r} may only contain letters, digits, '-' and '_' (1-128 chars)")
    return name


def deliver_subject(stream: str, durable: str) -> str:
    """Same subject on every host, so queue-group members of one durable find each other."""
    return f"{DELIVER_PREFIX}.{stream}.{durable}"


# -- stream ---------------------------------------------------------------------------------------


def stream_config(settings: NatsSettings, domains: Iterable[str]) -> api.StreamConfig:
    """The stream the settings describe: by default every domain's subjects (``<domain>.>``)."""
    subjects = settings.subjects or [f"{domain}.>" for domain in sorted(domains)]
    return api.StreamConfig(
        name=settings.stream,
        description="CITARION events (citarion-host)",
        subjects=list(subjects),
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE if settings.storage == "file" else api.StorageType.MEMORY,
        num_replicas=settings.replicas,
        max_age=settings.max_age_s,
        max_bytes=settings.max_bytes,
        duplicate_window=settings.duplicate_window_s,
        discard=api.DiscardPolicy.OLD,
    )


def _differences(current: api.StreamConfig, wanted: api.StreamConfig) -> dict[str, tuple[Any, Any]]:
    """Managed fields whose value differs: ``{field: (current, wanted)}``."""
    found: dict[str, tuple[Any, Any]] = {}
    if sorted(current.subjects or []) != sorted(wanted.subjects or []):
        found["subjects"] = (current.subjects, wanted.subjects)
    if _enum_value(current.storage) != _enum_value(wanted.storage):
        found["storage"] = (_enum_value(current.storage), _enum_value(wanted.storage))
    if (current.num_replicas or 1) != (wanted.num_replicas or 1):
        found["num_replicas"] = (current.num_replicas, wanted.num_replicas)
    for name in ("max_age", "duplicate_window"):
        have, want = float(getattr(current, name) or 0), float(getattr(wanted, name) or 0)
        if not math.isclose(have, want, rel_tol=1e-6, abs_tol=1e-6):
            found[name] = (have, want)
    if (current.max_bytes if current.max_bytes is not None else -1) != wanted.max_bytes:
        found["max_bytes"] = (current.max_bytes, wanted.max_bytes)
    return found


#: The setting behind each compared stream field, to name it in a refusal.
_SETTING = {
    "subjects": "subjects",
    "storage": "storage",
    "num_replicas": "replicas",
    "max_age": "max_age_s",
    "max_bytes": "max_bytes",
    "duplicate_window": "duplicate_window_s",
}


def _covers(current: list[str], wanted: list[str]) -> bool:
    """True if every subject we want stored is within one the stream already stores."""
    try:
        return all(any(contains(have, want) for have in current) for want in wanted)
    except TopicError:  # a subject we cannot reason about (set by somebody else): compare exactly
        return False


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


async def ensure_stream(
    jsm: JetStreamManager, settings: NatsSettings, domains: Iterable[str]
) -> api.StreamInfo:
    """Create the stream, or check an existing one against ``settings``: brought in line (keeping its
    data) if ``settings.manage_stream``, else any difference is a :class:`ConfigError` with the diff."""
    wanted = stream_config(settings, domains)
    try:
        info = await retry_api(lambda: jsm.stream_info(settings.stream), retry_budget(settings))
    except NotFoundError:
        try:
            info = await retry_api(lambda: jsm.add_stream(wanted), retry_budget(settings))
        except APIError as exc:
            raise ConfigError(f"cannot create JetStream stream {settings.stream!r}: {exc}") from exc
        log.info(
            "stream created",
            extra={"stream": settings.stream, "subjects": wanted.subjects, "storage": settings.storage},
        )
        return info
    differences = _differences(info.config, wanted)
    if not settings.manage_stream and _covers(info.config.subjects or [], wanted.subjects or []):
        differences.pop("subjects", None)  # it stores all we publish (and more): not our business
    if not differences:
        return info
    if "storage" in differences:
        have, want = differences["storage"]
        raise ConfigError(
            f"JetStream stream {settings.stream!r} uses {have} storage but the settings ask for {want}; "
            "the storage type cannot be changed in place and citarion-host never deletes a stream: "
            "migrate it (e.g. `nats stream backup`/`restore`) or change `storage` back"
        )
    if not settings.manage_stream:
        diff = "; ".join(
            f"{_SETTING[name]}: server {have!r}, this host {want!r}"
            for name, (have, want) in differences.items()
        )
        raise ConfigError(
            f"JetStream stream {settings.stream!r} differs from this host's [backend.nats] settings "
            f"({diff}); "
            "this host does not manage the stream, so it does not rewrite it: align these settings with "
            "the stream's, or set manage_stream = true on the one host that owns the stream's settings"
        )
    merged = info.config.evolve(**{name: getattr(wanted, name) for name in differences})
    try:
        info = await retry_api(lambda: jsm.update_stream(merged), retry_budget(settings))
    except APIError as exc:
        raise ConfigError(
            f"cannot update JetStream stream {settings.stream!r} ({differences}): {exc}"
        ) from exc
    log.info(
        "stream updated",
        extra={"stream": settings.stream, "changes": {k: list(v) for k, v in differences.items()}},
    )
    return info


# -- consumers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsumerPlan:
    """What a stream-backed subscription asked for."""

    patterns: tuple[str, ...]
    durable: str | None
    queue: str | None
    start_sequence: int | None
    start_time: datetime | None
    max_ack_pending: int
    #: A non-durable consumer with this name (not one the server makes up): a bot's own connection may
    #: only ack, and receive on the deliver subject of, the consumer its NATS user was granted
    #: (``natsauth.bot_consumer``). It is still ephemeral: removed when unused.
    name: str | None = None

    @property
    def consumer(self) -> str | None:
        """The consumer's name when known in advance (durable or named), else None."""
        return self.durable or self.name

    @property
    def positioned(self) -> bool:
        return self.start_sequence is not None or self.start_time is not None


def reduce_filters(patterns: Iterable[str]) -> list[str]:
    """The patterns without those another one contains: the same events, and what the server accepts.

    nats-server refuses filter subjects where one contains another ("consumer subject filters cannot
    overlap"); partial overlaps (``a.*.c`` and ``a.b.*``) are accepted and delivered once.
    """
    unique = list(dict.fromkeys(patterns))  # two different patterns never contain each other
    return [p for p in unique if not any(q != p and contains(q, p) for q in unique)]


def same_filters(a: api.ConsumerConfig, b: api.ConsumerConfig) -> bool:
    """Do two consumer configs select the same subjects (nothing to update on the server)?"""
    return a.filter_subject == b.filter_subject and sorted(a.filter_subjects or []) == sorted(
        b.filter_subjects or []
    )


def _filters(patterns: Iterable[str]) -> dict[str, Any]:
    """``filter_subject`` for one pattern (what older servers understand), ``filter_subjects`` else."""
    reduced = reduce_filters(patterns)
    if len(reduced) == 1:
        return {"filter_subject": reduced[0], "filter_subjects": None}
    return {"filter_subject": None, "filter_subjects": reduced}


def consumer_config(plan: ConsumerPlan, settings: NatsSettings, deliver: str) -> api.ConsumerConfig:
    """Explicit-ack push consumer for ``plan``; redelivery is paced by our naks, not by the server.

    All the subscription's patterns are the consumer's filter subjects: one consumer, so its events
    come in stream order whichever pattern they match, each once.
    """
    if plan.start_sequence is not None:
        policy, start_seq, start_time = api.DeliverPolicy.BY_START_SEQUENCE, plan.start_sequence, None
    elif plan.start_time is not None:
        policy, start_seq, start_time = api.DeliverPolicy.BY_START_TIME, None, plan.start_time.astimezone(UTC)
    elif plan.durable is None or settings.durable_start == "new":
        policy, start_seq, start_time = api.DeliverPolicy.NEW, None, None
    else:
        policy, start_seq, start_time = api.DeliverPolicy.ALL, None, None
    return api.ConsumerConfig(
        durable_name=plan.durable,
        name=plan.name if plan.durable is None else None,
        description=f"citarion-host {plan.durable or 'stored'} on {' | '.join(plan.patterns)}",
        deliver_policy=policy,
        opt_start_seq=start_seq,
        opt_start_time=start_time,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_s,
        # Unlimited on the server: the bus counts deliveries itself and dead-letters at max_deliver, so a
        # host dying mid-way can never leave a message stuck "max deliveries reached" but not parked.
        max_deliver=-1,
        **_filters(plan.patterns),
        max_ack_pending=plan.max_ack_pending,
        deliver_subject=deliver,
        deliver_group=plan.queue,
        inactive_threshold=None if plan.durable else settings.inactive_threshold_s,
        replay_policy=api.ReplayPolicy.INSTANT,
    )


async def ensure_consumer(
    jsm: JetStreamManager, stream: str, config: api.ConsumerConfig, timeout: float
) -> api.ConsumerInfo:
    """Create the consumer; for an existing durable, check it is compatible and apply changes."""
    durable = config.durable_name
    if durable is None:
        return await retry_api(lambda: jsm.add_consumer(stream, config), timeout)
    try:
        info: api.ConsumerInfo = await retry_api(lambda: jsm.consumer_info(stream, durable), timeout)
    except NotFoundError:
        return await retry_api(lambda: jsm.add_consumer(stream, config), timeout)
    current = info.config
    if config.deliver_policy in (api.DeliverPolicy.BY_START_SEQUENCE, api.DeliverPolicy.BY_START_TIME):
        raise ValueError(
            f"durable {durable!r} already exists on stream {stream!r}: it resumes where it stopped; "
            "delete the consumer to restart it from a sequence or a time"
        )
    if (current.deliver_group or None) != (config.deliver_group or None):
        raise ValueError(
            f"durable {durable!r} is shared with queue group {current.deliver_group!r}, "
            f"not {config.deliver_group!r}: use the same queue name, or another durable name"
        )
    if config.deliver_group is None and info.push_bound:
        raise ValueError(f"durable {durable!r} is already being consumed by another subscriber")
    changed = (
        not same_filters(current, config)
        or current.deliver_subject != config.deliver_subject
        or not math.isclose(float(current.ack_wait or 0), float(config.ack_wait or 0))
        or current.max_ack_pending != config.max_ack_pending
    )
    if not changed:
        return info
    update = current.evolve(
        filter_subject=config.filter_subject,
        filter_subjects=config.filter_subjects,
        deliver_subject=config.deliver_subject,
        ack_wait=config.ack_wait,
        max_ack_pending=config.max_ack_pending,
    )
    log.info("durable consumer updated", extra={"stream": stream, "durable": durable})
    return await retry_api(lambda: jsm.add_consumer(stream, update), timeout)


async def consumer_names(jsm: JetStreamManager, stream: str) -> set[str]:
    """The names of every consumer of ``stream`` (``$JS.API.CONSUMER.NAMES``, page by page): one
    request for up to 1,024 of them, where ``consumers_info`` sends each one's whole state.
    nats-py has no call for it; its request helper is used as its own calls use it."""
    names: set[str] = set()
    while True:
        payload = json.dumps({"offset": len(names)}).encode()
        response = await jsm._api_request(
            f"{jsm._prefix}.CONSUMER.NAMES.{stream}", payload, timeout=jsm._timeout
        )
        page = response.get("consumers") or []
        names.update(page)
        if not page or len(names) >= int(response.get("total", 0)):
            return names


# -- retries ------------------------------------------------------------------------------------


#: JetStream's "no suitable peers for placement": a cluster that does not know enough peers yet.
_NO_PLACEMENT = 10005


def retry_budget(settings: NatsSettings) -> float:
    """How long a JetStream API call that sets things up (the stream, a consumer, the state bucket) is
    retried while JetStream is not ready: three of its own timeouts (docs/limits.md)."""
    return settings.api_timeout_s * 3


async def retry_api(call: Callable[[], Awaitable[T]], timeout: float) -> T:
    """Run a JetStream API call, retrying while JetStream is temporarily unavailable.

    Right after a (re)connection or in a cluster during a leader election the API answers "no
    responders" or 503 for a moment, and a cluster still gathering its peers refuses a replicated
    stream or bucket with "no suitable peers for placement" (err_code 10005); that is worth waiting
    for, an actual error (not found, bad config) is not. A placement that can never succeed (more
    replicas than servers) fails the same way once ``timeout`` has passed.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    delay = 0.02
    while True:
        try:
            return await call()
        except (NatsNoRespondersError, NatsTimeoutError, ServiceUnavailableError, TimeoutError):
            if asyncio.get_running_loop().time() + delay > deadline:
                raise
        except APIError as exc:
            # getattr: some of nats-py's APIError subclasses (KeyNotFoundError...) never set them
            transient = getattr(exc, "code", None) == 503 or getattr(exc, "err_code", None) == _NO_PLACEMENT
            if not transient or asyncio.get_running_loop().time() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


async def ensure_bucket(
    nc: Client, settings: NatsSettings, bucket: str, *, description: str, purpose: str, create: bool = True
) -> KeyValue | None:
    """Bind to the key-value ``bucket``, creating it when missing like the event stream (replicas and
    storage from ``settings``, one value per key); with ``create`` false a missing bucket is None
    (reading tools must not create one). ``purpose`` names it in the error (``for bot state``)."""
    js = nc.jetstream(timeout=settings.api_timeout_s)
    try:
        return await retry_api(lambda: js.key_value(bucket), retry_budget(settings))
    except BucketNotFoundError:
        if not create:
            return None
    config: Any = api.KeyValueConfig(
        bucket=bucket,
        description=description,
        history=1,
        storage=api.StorageType.FILE if settings.storage == "file" else api.StorageType.MEMORY,
        replicas=settings.replicas,
    )
    try:
        kv = await retry_api(lambda: js.create_key_value(config), retry_budget(settings))
    except NatsError as exc:
        raise StateError(f"cannot create the key-value bucket {bucket!r} {purpose}: {exc!r}") from exc
    log.info(
        "key-value bucket created",
        extra={
            "bucket": bucket,
            "purpose": purpose,
            "replicas": settings.replicas,
            "storage": settings.storage,
        },
    )
    return kv
