"""The dashboard of one host: its live feed, what the page shows, the controls, health.

One object per host, passed to the web app (``web.py``): no module-level state. It is built before
the host starts; its feed is registered as a host observer (``Host.observe``), so it is attached to
the bus before any bot starts and follows a backend switch. Everything it reports is read from the
host (runners, config, bus) or derived from the events (``Book``) when asked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from ..explain import describe, follow
from ..settings import UiSettings
from .book import Book, data_time
from .feed import LiveFeed, Retained
from .graph import topology_graph
from .rates import Rates
from .sse import Streams

if TYPE_CHECKING:
    from ..events import Event
    from ..host import Host
    from ..registry import BotInfo, BotRegistry

__all__ = ["Dashboard"]

#: States a bot may be in when readiness does not count it against the host.
_DISABLED = "disabled"


def _entry(registry: BotRegistry, code: str) -> BotInfo | None:
    """The registry's bot or service for ``code`` (a running bot's code is known: the check said so)."""
    try:
        return registry.entry(code)
    except LookupError:
        return None


class _WireEvents(Mapping[str, dict[str, Any]]):
    """The retained events by id, as wire dicts (decoded when looked up): what ``explain.follow`` reads."""

    def __init__(self, feed: LiveFeed) -> None:
        self._feed = feed

    def __getitem__(self, event_id: str) -> dict[str, Any]:
        entry = self._feed.find(event_id)
        if entry is None:
            raise KeyError(event_id)
        decoded: dict[str, Any] = json.loads(self._feed.wire(entry))
        return decoded

    def __contains__(self, event_id: object) -> bool:
        return isinstance(event_id, str) and self._feed.find(event_id) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._feed.by_id))

    def __len__(self) -> int:
        return len(self._feed.by_id)


class Dashboard:
    """Feed, book, streams and rates of one host, and the JSON the page reads."""

    def __init__(self, host: Host, settings: UiSettings) -> None:
        self.host = host
        self.settings = settings
        self.feed = LiveFeed(Book(settings.series_points), retain=settings.retain_events)
        self.streams = Streams(self.feed, settings.heartbeat_s)
        self.rates = Rates(self._counters)
        self.started = time.time()
        self.url: str | None = None
        host.observe(self.feed)
        # Handler durations (the metrics' histograms) are counted from the first scrape of /metrics
        # on (``HostCollector``), not from here: a dashboard nobody scrapes costs the bots nothing.

    @property
    def book(self) -> Book:
        """The feed's book, with every event the feed has been handed taken in (``LiveFeed.flush``)."""
        return self.feed.book

    # -- rates ----------------------------------------------------------------------------------------

    def _counters(self) -> dict[str, float]:
        counters: dict[str, float] = {
            "bus:events": self.feed.events,
            "bus:sse_sent": self.streams.sent,
            "bus:sse_dropped": self.feed.dropped,
        }
        backlog = 0
        for bot_id, runner in self.host.runners.items():
            counters[f"in:{bot_id}"] = runner.handled
            counters[f"out:{bot_id}"] = sum(runner.published.values())
            if runner.subscription is not None:
                backlog += runner.subscription.pending
        counters["bus:backlog"] = backlog  # a level, not a counter: its "rate" is not used
        return counters

    # -- health -----------------------------------------------------------------------------------------

    def bus_connected(self) -> bool:
        return self.host.health().connected

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """The host's own readiness (:meth:`Host.health <citarion_host.host.Host.health>`): one source
        of truth for ``/readyz``, the overview and ``citarion-host run``."""
        health = self.host.health()
        return health.ready, health.to_dict()

    # -- views --------------------------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        host = self.host
        ready, _ = self.readiness()
        return {
            "host": host.config.host.name,
            "backend": host.bus.name,
            "deterministic": host.bus.deterministic,
            "ready": ready,
            "busConnected": self.bus_connected(),
            "finished": host.finished.is_set(),
            "events": self.feed.events,
            "eventsPerS": round(self.rates.rate("bus:events"), 1),
            "sseClients": len(self.streams.open),
            "sseDropped": self.feed.dropped,
            "uptimeS": round(time.time() - self.started, 1),
            "bots": {bot_id: runner.state for bot_id, runner in host.runners.items()},
            **self.book.summary(),
        }

    def bots(self) -> list[dict[str, Any]]:
        host, registry = self.host, self.host.registry
        rows = []
        for config in host.config.bots:
            runner = host.runners.get(config.id)
            entry = _entry(registry, config.code)
            category = registry.category(entry.category) if entry is not None else None
            book = self.book.bots.get(config.id)
            subscription = runner.subscription if runner is not None else None
            rows.append(
                {
                    "id": config.id,
                    "code": config.code,
                    "name": entry.name if entry else config.code,
                    "plugin": config.plugin,
                    "category": category.id if category else "other",
                    "categoryName": category.name if category else "Other",
                    "state": runner.state if runner is not None else _DISABLED,
                    "enabled": config.enabled,
                    "stoppedByOperator": config.id in host.stopped_by_operator,
                    "restarts": runner.restarts if runner else 0,
                    "handled": runner.handled if runner else 0,
                    "errors": runner.errors if runner else 0,
                    "refused": runner.refused if runner else 0,
                    "published": dict(runner.published) if runner else {},
                    "inPerS": round(self.rates.rate(f"in:{config.id}"), 1),
                    "outPerS": round(self.rates.rate(f"out:{config.id}"), 1),
                    "backlog": subscription.pending if subscription else 0,
                    "dropped": sum(subscription.dropped) if subscription else 0,
                    "lastError": book.last_error if book else None,
                    "pnl": round(book.pnl, 4) if book else 0.0,
                    "realizedPnl": round(book.realized, 4) if book else 0.0,
                    "unrealizedPnl": round(book.unrealized, 4) if book else 0.0,
                    "fees": round(book.fees, 4) if book else 0.0,
                    "fills": book.fills if book else 0,
                    "alerts": book.alerts if book else 0,
                    "subscribe": list(config.subscribe),
                    "publish": list(config.publish),
                }
            )
        return rows

    def topology(self) -> dict[str, Any]:
        host = self.host
        return topology_graph(host.config.bots, host.findings(), host.registry)

    def positions(self) -> list[dict[str, Any]]:
        rows = []
        for bot_id, book in sorted(self.book.bots.items()):
            for event in book.positions.values():
                rows.append(
                    {**self.wire_payload(event), "eventId": event.id, "time": data_time(event), "bot": bot_id}
                )
        return rows

    def orders(self) -> dict[str, Any]:
        return {
            "open": [self.event_row(e) for e in self.book.open_orders.values()],
            "recent": [self.event_row(e) for e in reversed(self.book.closed_orders)],
        }

    def fills(self, series: str | None = None) -> list[dict[str, Any]]:
        rows = []
        for event in self.book.fills:
            payload = event.payload
            if series is not None and f"{payload.exchange}:{payload.symbol}" != series:
                continue
            rows.append(self.event_row(event))
        return rows

    def prices(self, series: str | None = None) -> dict[str, Any]:
        names = sorted(self.book.prices)
        chosen = series if series in self.book.prices else (names[0] if names else None)
        return {
            "series": names,
            "selected": chosen,
            "prices": self.book.prices[chosen].to_dict() if chosen else {"x": [], "y": []},
            "fills": self.fills(chosen) if chosen else [],
        }

    def pnl(self) -> dict[str, Any]:
        bots = {
            bot_id: book.equity.to_dict() for bot_id, book in sorted(self.book.bots.items()) if book.equity
        }
        return {"bots": {k: v for k, v in bots.items() if v["x"]}, "total": self.book.total_pnl.to_dict()}

    def signals(self) -> list[dict[str, Any]]:
        return [self.event_row(e) for e in reversed(self.book.signals)]

    def consensus(self) -> list[dict[str, Any]]:
        rows = []
        for series in sorted(set(self.book.decisions) | set(self.book.latest_signals)):
            decision = self.book.decisions.get(series)
            latest = self.book.latest_signals.get(series, {})
            rows.append(
                {
                    "series": series,
                    "decision": self.event_row(decision) if decision is not None else None,
                    "signals": {source: self.event_row(e) for source, e in sorted(latest.items())},
                }
            )
        return rows

    def alerts(self) -> dict[str, Any]:
        counts = [
            {"kind": kind, "severity": severity, "count": count}
            for (kind, severity), count in self.book.alert_counts.most_common()
        ]
        return {
            "counts": counts,
            "recent": [self.event_row(e) for e in reversed(self.book.alerts)],
            "blocks": [self.event_row(e) for e in self.book.blocks.values()],
            "blocksSet": self.book.blocks_set,
        }

    def bus(self) -> dict[str, Any]:
        return {
            "stats": self.host.bus.stats(),
            "connected": self.bus_connected(),
            "feed": self.feed.stats(),
            "sse": self.streams.stats(),
            "rates": {
                k.removeprefix("bus:"): round(v, 1)
                for k, v in self.rates.rates.items()
                if k.startswith("bus:")
            },
            "history": list(self.rates.history),
            "deadLetters": self.book.dead_letters,
            "handlerFailures": self.book.handler_failures,
            "overflowReports": self.book.overflow_reports,
            "connection": self.book.connection,
            "system": [self.event_row(e) for e in reversed(self.book.system)],
        }

    def event(self, event_id: str) -> dict[str, Any] | None:
        entry = self.feed.find(event_id)
        return None if entry is None else self._wire(entry)

    def lineage(self, event_id: str) -> dict[str, Any] | None:
        events = _WireEvents(self.feed)
        if event_id not in events:
            return None
        chain = follow(events, event_id)
        return {
            "hops": [{"event": hop, "text": describe(hop)} for hop in chain.hops],
            "end": chain.end,
            "reachesMarket": chain.reaches_market,
        }

    # -- rows -----------------------------------------------------------------------------------------------

    def _wire(self, entry: Retained) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.feed.wire(entry))
        decoded["position"] = entry.position
        return decoded

    def wire_payload(self, event: Event) -> dict[str, Any]:
        built: Any = msgspec.to_builtins(event.payload)
        return built if isinstance(built, dict) else {"value": built}

    def event_row(self, event: Event) -> dict[str, Any]:
        """An event as the page lists it: id, topic, source, times, payload (wire names)."""
        return {
            "id": event.id,
            "topic": event.topic,
            "source": event.source,
            "priority": event.priority,
            "timestamp": event.timestamp,
            "time": data_time(event),
            "causationId": event.causation_id,
            "payload": self.wire_payload(event),
        }
