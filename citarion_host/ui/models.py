"""Response shapes of the REST API, for the OpenAPI schema the app generates (``/openapi.json``).

The handlers build plain dicts (``Dashboard``) and send them encoded by msgspec, unvalidated: these
models document the shapes, they do not sit on the path of every response. Field names are the wire
names (camelCase, as in the events).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BotView",
    "BusView",
    "ControlResult",
    "EventRow",
    "LineageView",
    "Overview",
    "Readiness",
    "ReloadView",
    "TopologyView",
]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Overview(_Open):
    host: str
    backend: str
    deterministic: bool
    ready: bool
    busConnected: bool
    finished: bool = Field(description="every [host] stop_on publisher has reported (the replay is over)")
    events: int = Field(description="events the dashboard saw on the bus")
    eventsPerS: float
    sseClients: int
    sseDropped: int = Field(description="events browsers lost (slow, or resumed from outside the window)")
    uptimeS: float
    bots: dict[str, str] = Field(description="bot id -> state")


class BotView(_Open):
    id: str
    code: str
    name: str
    plugin: str
    category: str = Field(description="registry category id (operational, institutional, ...)")
    categoryName: str
    state: str = Field(
        description="created, standby, starting, running, restarting, stopped, failed or disabled"
    )
    enabled: bool
    stoppedByOperator: bool
    restarts: int
    handled: int
    errors: int
    refused: int
    published: dict[str, int] = Field(description="events published, by entity (signal, order, ...)")
    inPerS: float
    outPerS: float
    backlog: int
    dropped: int
    lastError: str | None
    pnl: float
    realizedPnl: float
    unrealizedPnl: float
    fees: float
    fills: int
    alerts: int
    subscribe: list[str]
    publish: list[str]


class EventRow(_Open):
    id: str
    topic: str
    source: str
    priority: str
    timestamp: int = Field(description="wall time, Unix ms")
    time: int = Field(description="data time (metadata.dataTime), else wall time, Unix ms")
    causationId: str | None
    payload: dict[str, Any]


class TopologyView(_Open):
    nodes: list[dict[str, Any]] = Field(
        description="id, label, column (0 publishers, 1 patterns, 2 subscribers), rank, marked, findings"
    )
    edges: list[dict[str, Any]] = Field(description="source, target, marked, findings")
    findings: list[dict[str, Any]] = Field(
        description="the check's findings (citarion-host check --json) with their text"
    )
    columns: list[str]


class BusView(_Open):
    stats: dict[str, Any] = Field(description="bus.stats(): published, malformed, per subscription counters")
    connected: bool
    feed: dict[str, Any]
    sse: dict[str, Any]
    rates: dict[str, float]
    history: list[dict[str, Any]]
    deadLetters: int
    handlerFailures: int
    overflowReports: int


class LineageView(_Open):
    hops: list[dict[str, Any]] = Field(description="the event, then each cause: {event, text}")
    end: str = Field(description="why the chain stops there")
    reachesMarket: bool


class Readiness(_Open):
    ready: bool
    reasons: list[str]
    bus: dict[str, Any]
    bots: dict[str, str]


class ControlResult(_Open):
    bot: str
    action: str
    state: str


class ReloadView(_Open):
    status: str = Field(description="applied, rejected or unchanged")
    errors: list[str]
    diff: dict[str, Any] | None
