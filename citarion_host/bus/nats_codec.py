"""One-pass decoding of events whose NATS subject is their topic.

:meth:`EventCatalog.decode` cannot know the payload type before it has read the topic, so it decodes
twice: the envelope with the payload left raw, then the payload. A message received on NATS comes with
its subject, which for our events *is* the topic, so the payload type is known up front and one msgspec
pass decodes envelope and typed payload together: 1.0 us instead of 1.75 us per event, measured.

The result is always exactly what :meth:`EventCatalog.decode` returns: whenever the fast path meets
anything unusual (an invalid subject, a decoding or validation error, a ``topic`` field that is not the
subject, ``domain``/``entity``/``action`` contradicting the topic) it hands the bytes to the catalog,
which decodes them the general way or raises its precise :class:`InvalidEventError`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..events import Event, EventCatalog, InvalidEventError, Priority
from ..payloads import Payload

__all__ = ["SubjectDecoder"]

_ENVELOPE: list[tuple[str, Any] | tuple[str, Any, Any]] = [
    ("id", str),
    ("topic", str),
    ("domain", str),
    ("entity", str),
    ("action", str),
    ("timestamp", int),
    ("source", str),
    ("priority", Priority),
    ("correlation_id", str | None, None),
    ("causation_id", str | None, None),
    ("metadata", dict[str, Any], {}),
]


class SubjectDecoder:
    """``decode(subject, data)``: the event in ``data``, received on ``subject``."""

    __slots__ = ("_catalog", "_decoders")

    def __init__(self, catalog: EventCatalog) -> None:
        self._catalog = catalog
        self._decoders: dict[type[Payload] | None, msgspec.json.Decoder[Any]] = {}

    def decode(self, subject: str, data: bytes) -> Event:
        catalog = self._catalog
        try:
            info = catalog.info(subject)  # cached per topic; follows catalog changes
        except InvalidEventError:
            return catalog.decode(data)
        decoder = self._decoders.get(info.payload_type) or self._decoder(info.payload_type)
        try:
            wire = decoder.decode(data)
        except Exception:  # any failure: let the catalog produce the precise error
            return catalog.decode(data)
        if (
            wire.topic != subject
            or wire.domain != info.domain
            or wire.entity != info.entity
            or wire.action != info.action
        ):
            return catalog.decode(data)
        return Event(
            id=wire.id,
            topic=subject,
            domain=info.domain,
            entity=info.entity,
            action=info.action,
            timestamp=wire.timestamp,
            source=wire.source,
            priority=wire.priority,
            correlation_id=wire.correlation_id,
            causation_id=wire.causation_id,
            metadata=wire.metadata,
            payload=wire.payload,
        )

    def _decoder(self, payload_type: type[Payload] | None) -> msgspec.json.Decoder[Any]:
        # A typed payload is required (the catalog rejects a missing one: it decodes ``null``).
        payload: tuple[str, Any] | tuple[str, Any, Any] = (
            ("payload", payload_type) if payload_type is not None else ("payload", Any, None)
        )
        fields = [*_ENVELOPE, payload]
        struct = msgspec.defstruct("_WireEvent", fields, kw_only=True, rename="camel", gc=False)
        decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(struct)
        self._decoders[payload_type] = decoder
        return decoder
