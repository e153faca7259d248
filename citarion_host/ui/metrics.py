"""``/metrics``: the host's figures in the Prometheus text format, read at scrape time.

A custom collector (prometheus_client's documented pattern for values another object already
keeps) reads the runners, the bus, the feed and the dashboard's streams when Prometheus asks, so
nothing is counted twice and the hot path pays nothing for metrics (handler durations excepted:
``citarion_host/timings.py``; counted from the first scrape on, so a dashboard nobody scrapes does
not time every handler). Labels are bots and *declared* patterns, never concrete topics, so the
number of series is bounded by the config, not by the symbols traded. Every metric is described in
``docs/metrics.md``.

Per pattern: the feed counts events per (source, topic) as they pass; at scrape time each topic is
put under the first declared pattern of each bot it concerns (cached per topic), so a bot's series
add up to what it published or was sent, whatever its patterns overlap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from ..events import PRIORITIES
from ..topics import matches
from ..wiring import HOST_PUBLISHES

if TYPE_CHECKING:
    from .dashboard import Dashboard

__all__ = ["HOST_BOT", "HostCollector", "registry_for"]

#: The ``bot`` label of what the host itself publishes (lifecycle, failures, bus reports).
HOST_BOT = "host"
_STATES = ("created", "standby", "starting", "running", "restarting", "stopped", "failed")


def registry_for(dashboard: Dashboard) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one): two hosts in one process, or two
    tests, never mix their figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HostCollector(dashboard))
    return registry


def _first_match(patterns: Iterable[str], topic: str) -> str | None:
    for pattern in patterns:
        if matches(pattern, topic):
            return pattern
    return None


class HostCollector(Collector):
    """Collects the metrics of one dashboard's host at scrape time."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self._placed: dict[tuple[str, tuple[str, ...], str], str | None] = {}

    def _place(self, bot: str, patterns: tuple[str, ...], topic: str) -> str | None:
        key = (bot, patterns, topic)
        if key not in self._placed:
            if len(self._placed) > 200_000:
                self._placed.clear()
            self._placed[key] = _first_match(patterns, topic)
        return self._placed[key]

    def collect(self) -> Iterator[Metric]:
        dashboard = self.dashboard
        host, feed = dashboard.host, dashboard.feed
        host.time_handlers()  # from this first scrape on (a no-op after it)
        runners = dict(host.runners)
        yield from self._flow(dashboard)
        up = GaugeMetricFamily("citarion_bot_up", "1 when the bot is running, else 0", labels=["bot", "code"])
        state = GaugeMetricFamily(
            "citarion_bot_state",
            "1 for the bot's current state (one series per state)",
            labels=["bot", "state"],
        )
        handled = CounterMetricFamily(
            "citarion_bot_events_handled", "Events the bot's handle() completed", labels=["bot"]
        )
        errors = CounterMetricFamily(
            "citarion_bot_handler_errors", "Events whose handle() raised", labels=["bot"]
        )
        refused = CounterMetricFamily(
            "citarion_bot_publish_refused",
            "Publishes refused: topic outside the bot's declared patterns",
            labels=["bot"],
        )
        restarts = CounterMetricFamily(
            "citarion_bot_restarts", "Automatic restarts of the bot", labels=["bot"]
        )
        backlog = GaugeMetricFamily(
            "citarion_bot_backlog_events", "Events waiting in the bot's inbox", labels=["bot"]
        )
        dropped = CounterMetricFamily(
            "citarion_events_dropped",
            "Events dropped from the full inbox of the bot (overflow policy), by priority",
            labels=["bot", "priority"],
        )
        pnl = GaugeMetricFamily(
            "citarion_bot_pnl",
            "Realized + unrealized PnL from the bot's positions (quote currency)",
            labels=["bot"],
        )
        durations = HistogramMetricFamily(
            "citarion_bot_handler_duration_seconds",
            "Time spent in the bot's handle() per event",
            labels=["bot"],
        )
        for bot_id, runner in runners.items():
            up.add_metric([bot_id, runner.config.code], 1.0 if runner.state == "running" else 0.0)
            for name in _STATES:
                state.add_metric([bot_id, name], 1.0 if runner.state == name else 0.0)
            handled.add_metric([bot_id], runner.handled)
            errors.add_metric([bot_id], runner.errors)
            refused.add_metric([bot_id], runner.refused)
            restarts.add_metric([bot_id], runner.restarts)
            subscription = runner.subscription
            backlog.add_metric([bot_id], subscription.pending if subscription is not None else 0)
            if subscription is not None:
                for priority, count in zip(PRIORITIES, subscription.dropped, strict=True):
                    dropped.add_metric([bot_id, priority], count)
            pnl.add_metric([bot_id], dashboard.book.pnl_of(bot_id))
            timings = runner.timings
            if timings is not None:
                durations.add_metric([bot_id], timings.cumulative(), timings.total)
        yield from (up, state, handled, errors, refused, restarts, backlog, dropped, pnl, durations)
        yield from self._bus(dashboard)
        events = CounterMetricFamily("citarion_ui_events", "Events the dashboard's feed saw on the bus")
        events.add_metric([], feed.events)
        sse_sent = CounterMetricFamily("citarion_ui_sse_events_sent", "Events sent to browsers over SSE")
        sse_sent.add_metric([], dashboard.streams.sent)
        sse_dropped = CounterMetricFamily(
            "citarion_ui_sse_events_dropped",
            "Events browsers lost: too slow, or resumed from outside the window",
        )
        sse_dropped.add_metric([], feed.dropped)
        clients = GaugeMetricFamily("citarion_ui_sse_clients", "Open SSE streams")
        clients.add_metric([], len(dashboard.streams.open))
        yield from (events, sse_sent, sse_dropped, clients)

    def _flow(self, dashboard: Dashboard) -> Iterator[Metric]:
        """Published and delivered events per bot and declared pattern."""
        host, feed = dashboard.host, dashboard.feed
        bots = [bot for bot in host.config.bots if bot.enabled]
        by_code: dict[str, list[str]] = {}
        for bot in bots:
            by_code.setdefault(bot.code, []).append(bot.id)
        publish = {bot.id: tuple(bot.publish) for bot in bots}
        subscribe = {bot.id: tuple(bot.subscribe) for bot in bots if bot.subscribe}
        published: dict[tuple[str, str], int] = {}
        delivered: dict[tuple[str, str], int] = {}
        counts = dict(feed.counts)
        for (source, topic), count in counts.items():
            owners = by_code.get(source, [])
            # A code shared by several bots: the events are the code's, not one bot's.
            publisher = owners[0] if len(owners) == 1 else source if owners else HOST_BOT
            patterns = tuple(dict.fromkeys(p for owner in owners for p in publish[owner]))
            if not owners:
                patterns = HOST_PUBLISHES
            placed = self._place(publisher, patterns, topic) or "(undeclared)"
            published[(publisher, placed)] = published.get((publisher, placed), 0) + count
            for bot_id, patterns_in in subscribe.items():
                pattern = self._place(bot_id, patterns_in, topic)
                if pattern is not None:
                    delivered[(bot_id, pattern)] = delivered.get((bot_id, pattern), 0) + count
        pub = CounterMetricFamily(
            "citarion_events_published",
            "Events on the bus by publishing bot and the declared publish pattern they fell under",
            labels=["bot", "pattern"],
        )
        for (publisher, pattern), count in sorted(published.items()):
            pub.add_metric([publisher, pattern], count)
        dlv = CounterMetricFamily(
            "citarion_events_delivered",
            "Events on the bus matching the bot's subscription, by the first declared pattern they matched",
            labels=["bot", "pattern"],
        )
        for (receiver, pattern), count in sorted(delivered.items()):
            dlv.add_metric([receiver, pattern], count)
        yield pub
        yield dlv

    def _bus(self, dashboard: Dashboard) -> Iterator[Metric]:
        bus = dashboard.host.bus
        stats: dict[str, Any] = bus.stats()
        connected = GaugeMetricFamily(
            "citarion_bus_connected", "1 while the bus can carry events (memory: always)", labels=["backend"]
        )
        connected.add_metric([bus.name], 1.0 if dashboard.bus_connected() else 0.0)
        published = CounterMetricFamily(
            "citarion_bus_events_published", "Events published through this host's bus"
        )
        published.add_metric([], stats.get("published", 0))
        malformed = CounterMetricFamily(
            "citarion_bus_events_malformed", "Malformed messages dead-lettered on system.deadletter.malformed"
        )
        malformed.add_metric([], stats.get("malformed", 0))
        dead = CounterMetricFamily(
            "citarion_events_dead_lettered",
            "Events parked on system.deadletter.<reason> (seen by the dashboard)",
            labels=["reason"],
        )
        for reason, count in sorted(dashboard.book.dead_letter_reasons.items()):
            dead.add_metric([reason], count)
        failures = CounterMetricFamily(
            "citarion_bus_handler_failures", "Handlers that raised (any subscriber)"
        )
        failures.add_metric([], stats.get("handler_failures", 0))
        reconnects = CounterMetricFamily("citarion_bus_reconnects", "NATS reconnections (memory: 0)")
        reconnects.add_metric([], (stats.get("nats") or {}).get("reconnects", 0))
        waits = CounterMetricFamily(
            "citarion_bus_backpressure_waits",
            "Publishes of critical/high events that waited for room in a full subscriber's backlog",
        )
        waits.add_metric([], stats.get("backpressure_waits", 0))
        timeouts = CounterMetricFamily(
            "citarion_bus_backpressure_timeouts",
            "Publishes that gave up waiting (BackpressureTimeoutError after backpressure_timeout_s)",
        )
        timeouts.add_metric([], stats.get("backpressure_timeouts", 0))
        yield from (connected, published, malformed, dead, failures, reconnects, waits, timeouts)
        if "stalls" in stats:
            stalls = CounterMetricFamily(
                "citarion_bus_stalls", "Deterministic mode: deliveries given up waiting for (stall_timeout_s)"
            )
            stalls.add_metric([], stats["stalls"])
            yield stalls
            waited = CounterMetricFamily(
                "citarion_bus_sequencer_waits",
                "Deterministic mode: events whose deliveries had not all arrived when their turn came"
                " (on JetStream each a wait for the store)",
            )
            waited.add_metric([], stats.get("sequencer_waits", 0))
            yield waited
