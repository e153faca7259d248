"""The page in real headless Chromium (Debian's ``chromium``, driven by Playwright for Python).

Each test serves the quiet fleet (``conftest.QUIET_FLEET``) and drives the page the way an operator
would: the fleet's cards, a signal reaching the tail and the LOGOS panel, the Stop button, the live
feed cut by the server and resumed by the browser, the topology's planted mistake, a fill's lineage.
Every page is photographed into the test's temp dir.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from citarion_host.events import Event, make_event

from .conftest import CHROMIUM, CHROMIUM_ARGS, Served, until

PAGES = ("fleet", "topology", "tail", "trading", "signals", "risk", "bus", "lineage")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM}: missing; `make test` installs Debian's chromium"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


async def open_page(browser: Browser, served: Served, view: str = "fleet") -> Page:
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.problems = problems  # type: ignore[attr-defined]
    await page.goto(f"{served.url}#{view}")
    await expect(page.locator("body[data-loaded='1']")).to_have_count(1, timeout=10_000)
    await expect(page.locator("#stream")).to_have_text("live", timeout=10_000)
    return page


def no_problems(page: Page) -> None:
    assert page.problems == []  # type: ignore[attr-defined]


def signal(series: tuple[str, str] = ("binance", "BTCUSDT"), **extra: Any) -> Event:
    exchange, symbol = series
    payload = {
        "symbol": symbol,
        "exchange": exchange,
        "direction": "LONG",
        "confidence": 0.8,
        "reason": "browser test",
    }
    return make_event("trading.signal.generated", payload, source="GRD", metadata={"botId": "mesh", **extra})


async def test_the_fleet_shows_one_card_per_bot_grouped_by_category(browser: Browser, quiet: Served) -> None:
    page = await open_page(browser, quiet)
    bots = quiet.host.config.bots
    await expect(page.locator(".bot-card")).to_have_count(len(bots))
    for bot in bots:
        card = page.locator(f".bot-card[data-bot='{bot.id}']")
        await expect(card).to_have_attribute("data-state", "running")
        await expect(card.locator("button[data-action='stop']")).to_be_enabled()
    groups = await page.locator(".category").evaluate_all(
        "gs => gs.map(g => [g.dataset.name, g.querySelectorAll('.bot-card').length])"
    )
    assert dict(groups) == {
        "Host Services": 2,
        "Operational Bots": 2,
        "Analytics Bots": 1,
        "Integration Bots": 1,
    }
    await expect(page.locator("#strip .bot-pill")).to_have_count(len(bots))  # the controls on every page
    no_problems(page)


async def test_a_published_signal_reaches_the_tail_and_the_logos_panel_within_2s(
    browser: Browser, quiet: Served
) -> None:
    page = await open_page(browser, quiet, "tail")
    event = signal()
    started = time.perf_counter()
    await quiet.host.bus.publish(event)
    await expect(page.locator(f".tail-row[data-id='{event.id}']")).to_have_count(1, timeout=2_000)
    await expect(page.locator(f"#consensus .vote[data-id='{event.id}']")).to_have_count(1, timeout=2_000)
    elapsed = time.perf_counter() - started
    print(f"signal in the tail and the LOGOS panel after {elapsed * 1000:.0f} ms")
    assert elapsed < 2.0
    await page.goto(f"{quiet.url}#signals")
    await expect(page.locator(f"#signals .signal-row[data-id='{event.id}']")).to_have_count(1, timeout=2_000)
    await expect(page.locator("#consensus .series-row[data-series='binance:BTCUSDT']")).to_contain_text(
        "mesh LONG 0.80"
    )
    no_problems(page)


async def test_the_fleet_streams_only_the_bots_lifecycle_and_another_page_starts_live(
    browser: Browser, quiet: Served
) -> None:
    """The fleet's cards are REST figures: its stream carries the bots' lifecycle and nothing else (a
    fast replay's signals cost the browser more than the replay). Switching to the tail then starts at
    the live end rather than pulling back everything since the fleet's last event."""
    page = await open_page(browser, quiet)
    streams = quiet.dashboard.streams
    await until(lambda: len(streams.open) == 1, 5, "the fleet's stream")
    (fleet,) = streams.open.values()
    assert fleet.patterns == ("system.bot.>",)
    for _ in range(20):
        await quiet.host.bus.publish(signal())
    await quiet.host.bus.settle()
    await page.goto(f"{quiet.url}#tail")
    await until(lambda: [i.patterns for i in streams.open.values()] == [(">",)], 5, "the tail's stream")
    (tail,) = streams.open.values()
    assert tail.resumed_from is None and tail.sent == 0
    assert await page.evaluate("window.citarion.received") == 0  # none of the 20 signals
    no_problems(page)


async def test_stop_on_a_card_stops_the_bot_on_the_host(browser: Browser, quiet: Served) -> None:
    page = await open_page(browser, quiet)
    card = page.locator(".bot-card[data-bot='mesh']")
    await card.locator("button[data-action='stop']").click()
    await until(lambda: quiet.host.runners["mesh"].state == "stopped", 5, "mesh to stop")
    await expect(card).to_have_attribute("data-state", "stopped", timeout=3_000)
    await expect(card.locator(".state")).to_have_text("stopped")
    await expect(card.locator("button[data-action='start']")).to_be_enabled()
    await card.locator("button[data-action='start']").click()
    await until(lambda: quiet.host.runners["mesh"].state == "running", 5, "mesh to run again")
    await expect(card).to_have_attribute("data-state", "running", timeout=3_000)
    no_problems(page)


async def test_a_cut_stream_resumes_with_every_missed_event_exactly_once(
    browser: Browser, quiet: Served
) -> None:
    page = await open_page(browser, quiet, "tail")
    streams, feed = quiet.dashboard.streams, quiet.dashboard.feed
    await until(lambda: len(streams.open) == 1, 5, "the page's stream")
    opened = streams.opened
    feed.cut()
    await until(lambda: not streams.open, 5, "the server to close the stream")
    missed = [make_event("analytics.cut.test", {"n": n}, source="HOST") for n in range(3)]
    for event in missed:
        await quiet.host.bus.publish(event)
    assert not streams.open  # published while the browser was disconnected
    for event in missed:
        await expect(page.locator(f".tail-row[data-id='{event.id}']")).to_have_count(1, timeout=5_000)
    assert streams.opened == opened + 1
    await asyncio.sleep(0.5)  # nothing arrives twice later either
    for event in missed:
        await expect(page.locator(f".tail-row[data-id='{event.id}']")).to_have_count(1)
    await expect(page.locator("#stream")).to_have_text("live · 1 reconnect(s)")
    assert feed.dropped == 0
    no_problems(page)


async def test_the_topology_marks_the_planted_wiring_mistake(browser: Browser, quiet: Served) -> None:
    page = await open_page(browser, quiet, "topology")
    finding = page.locator("#topology-findings li.finding[data-bot='scout'][data-key='subscribe[1]']")
    await expect(finding).to_have_count(1, timeout=5_000)
    await expect(finding).to_contain_text("nothing can feed 'trading.order.expired'")
    marked = await page.evaluate("document.getElementById('topology-graph').data[3].text")
    assert "trading.order.expired" in marked and "scout (BBB)" in marked
    fine = await page.evaluate("document.getElementById('topology-graph').data[2].text")
    assert "mesh (GRD)" in fine and "trading.order.expired" not in fine
    no_problems(page)


async def trade(served: Served) -> Event:
    """A bar and an order on it: the paper exchange fills it (order -> fill -> position)."""
    bus, meta = served.host.bus, {"dataTime": 1_700_000_000_000}
    ticker = {"symbol": "BTCUSDT", "exchange": "binance", "bid": 99.9, "ask": 100.1, "last": 100.0}
    candle = {
        "symbol": "BTCUSDT", "exchange": "binance", "interval": "1m", "openTime": meta["dataTime"],
        "open": 99.0, "high": 101.0, "low": 98.0, "close": 100.0, "volume": 5.0,
    }  # fmt: skip
    await bus.publish(
        make_event("market.ticker.updated.binance.BTCUSDT", ticker, source="LUM", metadata=meta)
    )
    bar = make_event("market.candle.closed.binance.BTCUSDT", candle, source="LUM", metadata=meta)
    await bus.publish(bar)
    cause = signal(dataTime=meta["dataTime"])
    await bus.publish(cause)
    order = {
        "orderId": "mesh-ui-1", "symbol": "BTCUSDT", "exchange": "binance", "side": "BUY", "type": "MARKET",
        "quantity": 0.5, "status": "NEW", "botId": "mesh",
    }  # fmt: skip
    await bus.publish(
        make_event("trading.order.submitted", order, source="GRD", causation_id=cause.id, metadata=meta)
    )
    await bus.settle()
    await until(lambda: bool(served.dashboard.book.fills), 5, "the fill")
    return served.dashboard.book.fills[-1]


async def test_a_fill_on_the_chart_leads_to_its_lineage(browser: Browser, quiet: Served) -> None:
    fill = await trade(quiet)
    page = await open_page(browser, quiet, "trading")
    await expect(page.locator(f"#fills .fill-row[data-id='{fill.id}']")).to_have_count(1, timeout=5_000)
    buys = await page.evaluate("document.getElementById('price-chart').data[1].customdata")
    assert buys == [fill.id]
    await page.locator(f"#fills .fill-row[data-id='{fill.id}'] a").click()
    hops = page.locator("#lineage .hop")
    await expect(hops).to_have_count(3, timeout=5_000)  # fill <- order <- signal
    topics = await hops.evaluate_all("hs => hs.map(h => h.dataset.topic)")
    assert topics == ["trading.order.filled", "trading.order.submitted", "trading.signal.generated"]
    no_problems(page)


async def test_a_screenshot_of_every_page(browser: Browser, quiet: Served, tmp_path: Path) -> None:
    fill = await trade(quiet)
    await quiet.host.bus.publish(signal())
    page = await open_page(browser, quiet)
    for view in PAGES:
        await page.goto(f"{quiet.url}#{view}" + (f"/{fill.id}" if view == "lineage" else ""))
        await expect(page.locator(f"#view-{view}.active")).to_have_count(1)
        await page.wait_for_timeout(1_200)  # one refresh of the page's figures
        shot = tmp_path / f"{view}.png"
        await page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000, view
    print(f"screenshots in {tmp_path}")
    no_problems(page)
