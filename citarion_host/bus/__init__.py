"""Event bus backends behind one interface; :func:`open_bus` picks one from settings."""

from __future__ import annotations

from typing import Any

from ..events import EventCatalog
from .base import BUS_SOURCE, Capabilities, EventBus
from .config import BackendSettings, NatsSettings
from .memory import MemoryBus
from .position import PositionFinder, delivery_position, position_finder
from .subscription import Handler, Subscription

__all__ = [
    "BUS_SOURCE",
    "BackendSettings",
    "Capabilities",
    "EventBus",
    "Handler",
    "MemoryBus",
    "NatsSettings",
    "PositionFinder",
    "Subscription",
    "create_bus",
    "delivery_position",
    "position_finder",
]


def create_bus(
    settings: BackendSettings | dict[str, Any] | None = None, *, catalog: EventCatalog | None = None
) -> EventBus:
    """A not-yet-started bus for ``settings`` (default: in-memory) using ``catalog`` (default: the
    built-in types). Use it with ``async with``."""
    if not isinstance(settings, BackendSettings):
        settings = BackendSettings.model_validate(settings or {})
    options: dict[str, Any] = {
        "max_pending": settings.max_pending,
        "max_pending_urgent": settings.max_pending_urgent,
        "backpressure_timeout": settings.backpressure_timeout_s,
        "deterministic": settings.deterministic,
        "stall_timeout": settings.stall_timeout_s,
        "max_event_bytes": settings.max_event_bytes,
        "catalog_": catalog,
    }
    if settings.type == "memory":
        return MemoryBus(**options)
    from .nats import NatsBus  # imported lazily: nats-py is only needed for this backend

    return NatsBus(settings.nats, **options)
