"""``/metrics`` after the paper-trading demo, parsed by prometheus_client's own parser, against the
run's own counts: the run monitor (what the summary prints), the runners' counters and the bus's."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from citarion_host.host import Host
from citarion_host.monitor import RunMonitor
from citarion_host.settings import load_config
from citarion_host.ui import Dashboard, DashboardServer

from .conftest import Served, until

PAPER = Path(__file__).resolve().parents[2] / "configs" / "paper-trading.toml"


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name].append((dict(sample.labels), sample.value))
    return found


def by_bot(rows: list[tuple[dict[str, str], float]]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for labels, value in rows:
        totals[labels["bot"]] += value
    return dict(totals)


@dataclass
class Counts:
    events: int
    by_topic: dict[str, int]


@pytest.fixture(scope="module")
def demo() -> Any:
    import asyncio

    async def run() -> tuple[str, Counts, dict[str, Any], dict[str, Any]]:
        loaded = load_config(PAPER, environ={"CITARION_UI__PORT": "0"})
        host = Host(loaded)
        monitor = RunMonitor()
        host.observe(monitor)
        dashboard = Dashboard(host, loaded.config.ui)
        server = DashboardServer(dashboard)
        await server.start()
        import httpx

        async with httpx.AsyncClient(base_url=server.url) as client:
            await client.get("/metrics")  # as Prometheus would, from the start: handlers timed from here
        await host.start()
        try:
            await until(host.finished.is_set, 120, "the feed to complete")
            await host.bus.settle()
            async with httpx.AsyncClient(base_url=server.url) as client:
                text = (await client.get("/metrics")).text
            seen = Counts(monitor.events, dict(monitor.by_topic))  # at the scrape: the stop adds more
            runners = {
                bot_id: {
                    "handled": r.handled,
                    "errors": r.errors,
                    "published": sum(r.published.values()),
                    "dropped": sum(r.subscription.dropped) if r.subscription else 0,
                    "timed": r.timings.count if r.timings else None,
                }
                for bot_id, r in host.runners.items()
            }
            bus = host.bus.stats()
        finally:
            await host.stop()
            await server.stop()
        return text, seen, runners, bus

    return asyncio.run(run())


def test_every_event_is_counted_once_under_a_declared_pattern(demo: Any) -> None:
    text, monitor, _, bus = demo
    found = samples(text)
    published = found["citarion_events_published_total"]
    assert sum(value for _, value in published) == monitor.events > 8_000
    assert all(labels["pattern"] != "(undeclared)" for labels, _ in published)
    assert found["citarion_ui_events_total"] == [({}, monitor.events)]
    assert found["citarion_bus_events_published_total"] == [({}, bus["published"])]
    assert found["citarion_bus_sequencer_waits_total"] == [({}, bus["sequencer_waits"])] == [({}, 0)], (
        "deterministic on memory: every event is delivered as it is published, nothing waits"
    )
    lumi = {labels["pattern"]: value for labels, value in published if labels["bot"] == "lumi"}
    market = sum(n for topic, n in monitor.by_topic.items() if topic.startswith("market."))
    assert lumi == {"market.>": market}


def test_published_per_bot_matches_the_runners(demo: Any) -> None:
    text, _, runners, _ = demo
    published = by_bot(samples(text)["citarion_events_published_total"])
    for bot_id, counts in runners.items():
        assert published.get(bot_id, 0) == counts["published"], bot_id
    assert published["host"] > 0  # system.bot.started of every bot


def test_delivered_per_bot_matches_what_each_bot_handled(demo: Any) -> None:
    text, _, runners, _ = demo
    found = samples(text)
    delivered = by_bot(found["citarion_events_delivered_total"])
    handled = {labels["bot"]: value for labels, value in found["citarion_bot_events_handled_total"]}
    for bot_id, counts in runners.items():
        assert counts["errors"] == 0 and counts["dropped"] == 0, bot_id
        assert handled[bot_id] == counts["handled"], bot_id
        if counts["handled"]:
            assert delivered[bot_id] == counts["handled"], bot_id


def test_handler_durations_count_every_handled_event(demo: Any) -> None:
    text, _, runners, _ = demo
    found = samples(text)
    counts = {labels["bot"]: value for labels, value in found["citarion_bot_handler_duration_seconds_count"]}
    for bot_id, figures in runners.items():
        assert counts[bot_id] == figures["handled"] + figures["errors"] == figures["timed"], bot_id
    buckets = [
        v
        for labels, v in found["citarion_bot_handler_duration_seconds_bucket"]
        if labels["bot"] == "exchange"
    ]
    assert buckets == sorted(buckets) and buckets[-1] == counts["exchange"]


def test_bot_state_and_bus_gauges(demo: Any) -> None:
    text, _, runners, _ = demo
    found = samples(text)
    assert {labels["bot"] for labels, value in found["citarion_bot_up"] if value == 1.0} == set(runners)
    running = [
        labels["bot"]
        for labels, value in found["citarion_bot_state"]
        if labels["state"] == "running" and value
    ]
    assert sorted(running) == sorted(runners)
    assert found["citarion_bus_connected"] == [({"backend": "memory"}, 1.0)]
    names = {family.name for family in text_string_to_metric_families(text)}
    assert all(name.startswith("citarion_") for name in names)


def test_every_metric_is_documented(demo: Any) -> None:
    text = demo[0]
    documented = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in documented, name


async def test_handlers_are_timed_only_from_the_first_scrape_on(quiet: Served) -> None:
    """Timing every handler costs the bots two clock reads and a bucket per event: not paid for a
    dashboard nobody scrapes; from the first scrape on, every bot (and every later one) is timed."""
    host = quiet.host
    await until(lambda: all(r.state == "running" for r in host.runners.values()), what="running bots")
    assert host.handler_timings is None and all(r.timings is None for r in host.runners.values())
    async with quiet.client() as client:
        first = samples((await client.get("/metrics")).text)
    assert {labels["bot"] for labels, _ in first["citarion_bot_handler_duration_seconds_count"]} == set(
        host.runners
    )
    assert all(r.timings is not None for r in host.runners.values())
    await host.restart_bot("scout")
    assert host.runners["scout"].timings is host.handler_timings["scout"]  # type: ignore[index]
