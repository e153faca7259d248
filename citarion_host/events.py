"""The event envelope and its JSON wire format.

``Event`` mirrors the platform's TypeScript ``BaseEvent`` field for field; on the wire the names are
camelCase (``correlationId``, ``causationId``) and ``timestamp`` is Unix milliseconds, so TypeScript
services and the UI read our events as their own.

Why msgspec and not pydantic for the envelope: building, encoding and decoding events is the hot
path. Measured here, a msgspec Struct builds in ~0.1 us and encodes+decodes with validation in
~1.2 us, against ~5.9 us and ~5 us for a pydantic v2 model (``docs/events.md``). Pydantic stays where
its richer errors pay off and speed does not matter: configuration.

An :class:`EventCatalog` knows the domains and which payload type goes with which topic; it builds
events (:meth:`EventCatalog.make`) and turns wire bytes back into them (:meth:`EventCatalog.decode`).
The module-level :data:`catalog` holds the platform's built-in types only and is read-only: it is what
the convenience helpers (``make_event``, ``api``) use. A host owns a catalog of its own, which its
plugins extend (``citarion_payload_types``, ``citarion_domains``), and hands it to the bus it opens.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from itertools import accumulate
from typing import Any, Final, Generic, Literal

import msgspec
import msgspec.inspect
from typing_extensions import TypeVar

from .ids import id_at
from .payloads import BUILTIN_PAYLOADS, Payload, PayloadError
from .topics import PatternIndex, TopicError, quoted, split_topic

__all__ = [
    "DOMAINS",
    "MALFORMED_KINDS",
    "MAX_EVENT_DEPTH",
    "PRIORITIES",
    "PRIORITY_RANK",
    "Event",
    "EventCatalog",
    "InvalidEventError",
    "Priority",
    "catalog",
    "decode_event",
    "encode_event",
    "make_event",
]

P = TypeVar("P", bound=Payload)

Priority = Literal["critical", "high", "normal", "low"]
PRIORITIES: Final[tuple[Priority, ...]] = ("critical", "high", "normal", "low")
#: Lower rank is more urgent; queues serve rank 0 first.
PRIORITY_RANK: Final[dict[str, int]] = {name: rank for rank, name in enumerate(PRIORITIES)}

#: The platform's event domains (the first topic token). Plugins may add more.
DOMAINS: Final[frozenset[str]] = frozenset({"market", "trading", "risk", "analytics", "system"})


#: Deepest JSON nesting an event may have on the wire, the envelope counted (``{"payload": {...}}`` is
#: 2): docs/limits.md. Deeper input is refused as malformed (``too_deep``) before anything walks it.
MAX_EVENT_DEPTH: Final = 64

#: Why wire bytes were refused (``InvalidEventError.kind``; the bus counts dead letters by these):
#: ``not_json``, ``schema`` (valid JSON that is not a valid event of its topic), ``too_deep``,
#: ``oversized`` (over the bus's ``max_event_bytes``), ``subject`` (a subject that is no valid topic,
#: e.g. not UTF-8), ``undecodable`` (anything else the decoder raised).
MALFORMED_KINDS: Final[tuple[str, ...]] = (
    "not_json",
    "schema",
    "too_deep",
    "oversized",
    "subject",
    "undecodable",
)

#: The payload type; defaults to Any, so a bare ``Event`` annotation means "any payload".
PayloadT = TypeVar("PayloadT", default=Any)


class Event(
    msgspec.Struct, Generic[PayloadT], kw_only=True, rename="camel", omit_defaults=True, frozen=True, gc=False
):
    """One event. Immutable, so one instance can be handed to every subscriber.

    Build events with :func:`make_event` (or the helpers in :mod:`citarion_host.api`), which derive
    ``domain``/``entity``/``action`` from the topic, stamp ``id`` and ``timestamp`` and validate the
    payload; the raw constructor does no checking. Generic in the payload so that msgspec decodes
    ``Event[Signal]`` in one pass, straight into this class.
    """

    id: str
    topic: str
    domain: str
    entity: str
    action: str
    timestamp: int
    source: str
    priority: Priority
    correlation_id: str | None = None
    causation_id: str | None = None
    metadata: dict[str, Any] = {}
    payload: PayloadT


class InvalidEventError(ValueError):
    """An event (or its wire bytes) is invalid. The message names the topic and the field; ``kind``
    says which of :data:`MALFORMED_KINDS` it is."""

    def __init__(self, topic: str | None, field: str, reason: str, *, kind: str = "schema") -> None:
        where = f"topic {quoted(topic)}" if topic else "event"
        super().__init__(f"{where}: field {field!r}: {reason}")
        self.topic = topic
        self.field = field
        self.reason = reason
        self.kind = kind


_MSGSPEC_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def _from_validation(topic: str | None, prefix: str, error: Exception) -> InvalidEventError:
    """Turn a msgspec/payload error into one that names topic and field (``payload.confidence``)."""
    message = str(error)
    path = ""
    found = _MSGSPEC_PATH.search(message)
    if found:
        path = found.group("path")
        message = message[: found.start()]
    if isinstance(error, PayloadError):
        path, message = error.field, error.reason
    elif isinstance(error.__cause__, PayloadError):  # raised in __post_init__ while decoding at ``path``
        cause = error.__cause__
        path, message = (f"{path}.{cause.field}" if path else cause.field), cause.reason
    else:
        missing = re.search(r"missing required field `(?P<field>[^`]+)`", message)
        if missing:
            path = f"{path}.{missing.group('field')}" if path else missing.group("field")
        inner = re.match(r"(?P<field>[A-Za-z_][\w]*): (?P<reason>.*)", message)
        if inner and not path:
            path, message = inner.group("field"), inner.group("reason")
    field = f"{prefix}.{path}" if prefix and path else (prefix or path or "<root>")
    not_json = isinstance(error, msgspec.DecodeError) and not isinstance(error, msgspec.ValidationError)
    return InvalidEventError(topic, field, message, kind="not_json" if not_json else "schema")


def _too_deep(topic: str | None) -> InvalidEventError:
    return InvalidEventError(
        topic, "<root>", f"nested deeper than {MAX_EVENT_DEPTH} levels (docs/limits.md)", kind="too_deep"
    )


class _TopicInfo:
    """What a topic implies, computed once per distinct topic.

    ``bounded``: the payload's schema cannot nest beyond :data:`MAX_EVENT_DEPTH` (no ``Any``, no
    recursion), so a decoded event needs no depth check unless its metadata nests.
    """

    __slots__ = ("action", "bounded", "decoder", "domain", "entity", "payload_type")

    def __init__(
        self, domain: str, entity: str, action: str, payload_type: type[Payload] | None, bounded: bool
    ) -> None:
        self.domain = domain
        self.entity = entity
        self.action = action
        self.payload_type = payload_type
        self.bounded = bounded
        generic: Any = Event  # parametrized at run time: Event[Signal], Event[Any]...
        self.decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(generic[payload_type or Any])


class EventCatalog:
    """Domains and topic -> payload types; builds, encodes and decodes events.

    The per-topic cache makes repeated topics cost one dict lookup; registering a payload type or a
    domain clears it.
    """

    def __init__(self, domains: frozenset[str] = DOMAINS) -> None:
        self._read_only = False
        self._domains = set(domains)
        self._types: PatternIndex[tuple[str, type[Payload]]] = PatternIndex()
        self._topics: dict[str, _TopicInfo] = {}
        self._bounded: dict[type[Payload], bool] = {}  # per payload type: see _TopicInfo
        self._encoder = msgspec.json.Encoder()
        self._topic_decoder = msgspec.json.Decoder(_TopicOnly)

    @classmethod
    def with_builtins(cls) -> EventCatalog:
        """A catalog with the platform's domains and payload types."""
        new = cls()
        for pattern, payload_type in BUILTIN_PAYLOADS.items():
            new.register_payload(pattern, payload_type)
        return new

    @property
    def domains(self) -> frozenset[str]:
        return frozenset(self._domains)

    def read_only(self) -> EventCatalog:
        """Refuse further registrations (the shared default catalog: extend a catalog of your own)."""
        self._read_only = True
        return self

    def _check_writable(self, what: str) -> None:
        if self._read_only:
            raise TypeError(
                f"cannot {what}: this catalog is read-only (the shared built-in one); "
                "use a catalog of your own, EventCatalog.with_builtins(), as a host does"
            )

    def add_domain(self, domain: str) -> None:
        """Accept topics whose first token is ``domain``."""
        self._check_writable(f"add domain {domain!r}")
        split_topic(domain)
        self._domains.add(domain)
        self._topics.clear()

    def register_payload(self, pattern: str, payload_type: type[Payload]) -> None:
        """Topics matching ``pattern`` carry ``payload_type``. The most specific pattern wins."""
        self._check_writable(f"register a payload type for {pattern!r}")
        if not (isinstance(payload_type, type) and issubclass(payload_type, msgspec.Struct)):
            raise TypeError(f"payload type for {pattern!r} must be a msgspec.Struct, got {payload_type!r}")
        self._types.add(pattern, (pattern, payload_type))
        self._topics.clear()

    def payload_type(self, topic: str) -> type[Payload] | None:
        """The payload type registered for ``topic``, or None (dict payload)."""
        return self.info(topic).payload_type

    def info(self, topic: str) -> _TopicInfo:
        info = self._topics.get(topic)
        if info is None:
            info = self._topics[topic] = self._compute(topic)
        return info

    def _compute(self, topic: str) -> _TopicInfo:
        if not topic.isascii():  # a subject that was not UTF-8 arrives with surrogates (see _client.py)
            try:
                topic.encode()
            except UnicodeEncodeError:
                shown = topic.encode(errors="surrogateescape").decode(errors="backslashreplace")
                raise InvalidEventError(shown, "topic", "not valid UTF-8", kind="subject") from None
        try:
            tokens = split_topic(topic)
        except TopicError as exc:
            raise InvalidEventError(topic, "topic", str(exc), kind="subject") from None
        if len(tokens) < 3:
            raise InvalidEventError(topic, "topic", "needs at least <domain>.<entity>.<action>")
        if tokens[0] not in self._domains:
            known = ", ".join(sorted(self._domains))
            raise InvalidEventError(topic, "domain", f"unknown domain {tokens[0]!r} (known: {known})")
        candidates = self._types.match(topic)
        payload_type = max(candidates, key=_specificity)[1] if candidates else None
        bounded = False  # a dict payload: anything goes
        if payload_type is not None:
            cached = self._bounded.get(payload_type)
            if cached is None:  # once per payload type (a new topic per event must stay cheap)
                depth = _schema_depth(msgspec.inspect.type_info(payload_type), ())
                cached = self._bounded[payload_type] = depth is not None and depth + 1 < MAX_EVENT_DEPTH
            bounded = cached
        return _TopicInfo(tokens[0], tokens[1], tokens[2], payload_type, bounded)

    def make(
        self,
        topic: str,
        payload: Any,
        *,
        source: str,
        priority: Priority = "normal",
        correlation_id: str | None = None,
        causation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Event:
        """Build a validated event: id, timestamp and domain/entity/action are filled in."""
        info = self._topics.get(topic) or self.info(topic)
        expected = info.payload_type
        if expected is not None and type(payload) is not expected:
            if type(payload) is dict:  # the common case, without the general path's checks
                try:
                    payload = _convert(payload, expected)
                except (msgspec.ValidationError, PayloadError) as exc:
                    raise _from_validation(topic, "payload", exc) from None
            else:
                payload = self.coerce(topic, payload, expected)
        if priority not in PRIORITY_RANK:
            raise InvalidEventError(topic, "priority", f"must be one of {PRIORITIES}, got {priority!r}")
        if not source:
            raise InvalidEventError(topic, "source", "must name the emitting bot")
        now_ms = time.time_ns() // 1_000_000
        return Event(
            id=id_at(now_ms),
            topic=topic,
            domain=info.domain,
            entity=info.entity,
            action=info.action,
            timestamp=now_ms,
            source=source,
            priority=priority,
            correlation_id=correlation_id,
            causation_id=causation_id,
            metadata={} if metadata is None else metadata,
            payload=payload,
        )

    @staticmethod
    def coerce(topic: str, payload: Any, expected: type[P]) -> P:
        """``payload`` as ``expected`` (from a mapping of wire names), or an error naming topic and field."""
        if type(payload) is dict or isinstance(payload, Mapping):
            try:
                return msgspec.convert(payload, expected)
            except (msgspec.ValidationError, PayloadError) as exc:
                raise _from_validation(topic, "payload", exc) from None
        if isinstance(payload, expected):
            return payload
        raise InvalidEventError(
            topic,
            "payload",
            f"expected {expected.__name__} (or a mapping of its fields), got {type(payload).__name__}",
        )

    def encode(self, event: Event) -> bytes:
        """The event as JSON bytes (camelCase names)."""
        return self._encoder.encode(event)

    def encode_into(self, event: Event, buffer: bytearray) -> None:
        """Append the event's JSON (as :meth:`encode`) to ``buffer``: a record of many events builds no
        bytes object per event."""
        self._encoder.encode_into(event, buffer, -1)

    def appender(self) -> Callable[[Event, bytearray, int], None]:
        """The codec's own ``encode_into``: ``appender()(event, buffer, -1)`` appends as
        :meth:`encode_into` does, one Python call less for a caller on every event's path (the run
        monitor's record)."""
        return self._encoder.encode_into

    def decode(self, data: bytes | str, topic: str | None = None) -> Event[Any]:
        """Parse and validate wire bytes into an :class:`Event` with a typed payload.

        ``topic``: where the message arrived (a NATS subject), which the event's own ``topic`` must
        match; without it the topic is read from the message first. Raises
        :class:`InvalidEventError` for anything wrong: not JSON, missing fields, an invalid topic, an
        unknown domain, ``domain``/``entity``/``action`` contradicting the topic, a payload that fails
        its schema, nesting deeper than :data:`MAX_EVENT_DEPTH`. The size limit is the bus's
        (``max_event_bytes``), checked before this.
        """
        if topic is None:
            try:
                topic = self._topic_decoder.decode(data).topic
            except msgspec.DecodeError as exc:
                raise _from_validation(_peek_topic(data), "", exc) from None
            except RecursionError:
                raise _too_deep(_peek_topic(data)) from None
        info = self._topics.get(topic) or self.info(topic)
        try:
            event = info.decoder.decode(data)
        except (msgspec.DecodeError, PayloadError) as exc:
            raise _from_validation(topic, "", exc) from None
        except RecursionError:  # msgspec's guard, far deeper than the limit: refused the same way
            raise _too_deep(topic) from None
        if not info.bounded or event.metadata:
            self._check_depth(info, event.metadata, data, topic)
        if event.topic != topic:
            raise InvalidEventError(topic, "topic", f"{event.topic!r} arrived on {topic!r}")
        if event.domain != info.domain or event.entity != info.entity or event.action != info.action:
            for name, derived in (("domain", info.domain), ("entity", info.entity), ("action", info.action)):
                declared = getattr(event, name)
                if declared != derived:
                    raise InvalidEventError(topic, name, f"{declared!r} contradicts the topic ({derived!r})")
        return event

    @staticmethod
    def _check_depth(info: _TopicInfo, metadata: dict[str, Any], data: bytes | str, topic: str) -> None:
        """Refuse nesting beyond :data:`MAX_EVENT_DEPTH`. Only events that could nest pay for it: a
        payload type that allows it, or metadata holding containers; then counting the brackets (one
        pass in C) proves most of them shallow, and only the rest are measured."""
        if info.bounded:
            for value in metadata.values():
                if type(value) is dict or type(value) is list:
                    break
            else:
                return
        raw = data.encode() if isinstance(data, str) else data
        if raw.count(b"{") + raw.count(b"[") > MAX_EVENT_DEPTH and _depth(raw) > MAX_EVENT_DEPTH:
            raise _too_deep(topic)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def _depth(valid_json: bytes) -> int:
    """Deepest nesting of a JSON document already known to be valid (so its strings are well formed
    and the pattern runs in linear time)."""
    brackets = _JSON_STRING.sub(b"", valid_json).translate(None, _NOT_BRACKETS)
    return max(accumulate(_STEP[b] for b in brackets), default=0)


def _schema_depth(info: msgspec.inspect.Type, path: tuple[type, ...]) -> int | None:
    """How deep a value of this schema can nest (each struct or container is one level), or None when
    there is no bound (``Any``, a recursive struct, a custom type)."""
    ins = msgspec.inspect
    if isinstance(info, ins.AnyType | ins.CustomType | ins.RawType):
        return None
    if isinstance(info, ins.UnionType):
        return _deepest([_schema_depth(each, path) for each in info.types], 0)
    if isinstance(info, ins.StructType | ins.DataclassType | ins.TypedDictType | ins.NamedTupleType):
        if info.cls in path:
            return None  # recursive
        return _deepest([_schema_depth(field.type, (*path, info.cls)) for field in info.fields], 1)
    if isinstance(info, ins.DictType):
        return _deepest([_schema_depth(info.value_type, path)], 1)
    if isinstance(info, ins.ListType | ins.SetType | ins.FrozenSetType | ins.VarTupleType):
        return _deepest([_schema_depth(info.item_type, path)], 1)
    if isinstance(info, ins.TupleType):
        return _deepest([_schema_depth(each, path) for each in info.item_types], 1)
    return 0  # a scalar


def _deepest(depths: list[int | None], own: int) -> int | None:
    if None in depths:
        return None
    return own + max((depth for depth in depths if depth is not None), default=0)


class _TopicOnly(msgspec.Struct):
    """Just enough of an event to learn its topic (msgspec skips the rest without building it)."""

    topic: str


_convert = msgspec.convert


def _specificity(entry: tuple[str, type[Payload]]) -> tuple[int, int]:
    """Literal tokens beat wildcards; longer patterns beat shorter ones."""
    tokens = entry[0].split(".")
    return (sum(token not in ("*", ">") for token in tokens), len(tokens))


_TOPIC_PEEK = re.compile(rb'"topic"\s*:\s*"([^"\\]{1,256})"')


def _peek_topic(data: bytes | str) -> str | None:
    """Best-effort topic of a message that failed to decode, so the error can still name it."""
    raw = data.encode() if isinstance(data, str) else data
    found = _TOPIC_PEEK.search(raw)
    return found.group(1).decode(errors="replace") if found else None


#: The built-in types, read-only: used by :func:`make_event`, the helpers, and a bus given no catalog.
catalog: Final[EventCatalog] = EventCatalog.with_builtins().read_only()

make_event = catalog.make
encode_event = catalog.encode
decode_event = catalog.decode
