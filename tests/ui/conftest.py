"""Fixtures for the dashboard: a host with its dashboard served on a free port, and real Chromium.

The browser is Debian's chromium (``/usr/bin/chromium``, or ``CITARION_CHROMIUM``), driven by
Playwright for Python; ``make test`` installs it when missing. Playwright never downloads a browser
here. The launch flags are the ones known to work on these machines (no sandbox as root, no GPU, no
background networking: the machine's network is closed).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from citarion_host.host import Host
from citarion_host.settings import LoadedConfig, load_config
from citarion_host.ui import Dashboard, DashboardServer

CHROMIUM = os.environ.get("CITARION_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: A quiet fleet of the paper-trading bots (no feed: the tests publish what they need), with one
#: planted wiring mistake: scout subscribes to a topic nothing publishes.
QUIET_FLEET = """
[host]
name = "ui-test"

[ui]
port = 0

[[bots]]
id = "exchange"
code = "EXC"
plugin = "paper-exchange"
publish = ["trading.order.accepted", "trading.order.filled", "trading.order.rejected", "trading.order.cancelled", "trading.position.>"]
subscribe = ["trading.order.submitted", "market.>"]

[[bots]]
id = "risk"
code = "RSK"
plugin = "risk-guard"
publish = ["risk.>"]
subscribe = ["trading.position.>", "trading.order.filled", "market.candle.>"]

[[bots]]
id = "mesh"
code = "GRD"
plugin = "grid"
publish = ["trading.signal.>", "trading.order.submitted"]
subscribe = ["market.candle.>", "risk.>", "trading.order.filled"]

[[bots]]
id = "scout"
code = "BBB"
plugin = "bollinger"
publish = ["trading.signal.>"]
subscribe = ["market.candle.>", "trading.order.expired"]

[[bots]]
id = "logos"
code = "LOG"
plugin = "logos"
publish = ["analytics.decision.>", "trading.signal.>", "trading.order.submitted"]
subscribe = ["market.candle.>", "trading.signal.>", "trading.order.filled", "trading.position.>", "risk.>", "system.bot.>"]

[[bots]]
id = "wolf"
code = "WLF"
plugin = "wolf"
publish = ["system.alert.>"]
subscribe = ["risk.>", "system.bot.>"]
params = { console = "off" }
"""


async def until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait for ``condition`` (polled), failing after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(0.01)


def write_config(directory: Path, text: str, name: str = "ui.toml") -> LoadedConfig:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={})


@dataclass
class Served:
    host: Host
    dashboard: Dashboard
    server: DashboardServer

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10, **kwargs)


async def serve(loaded: LoadedConfig) -> Served:
    host = Host(loaded)
    host.check(loaded)
    dashboard = Dashboard(host, loaded.config.ui)
    server = DashboardServer(dashboard)
    server.bind()
    await server.start()
    await host.start()
    return Served(host, dashboard, server)


async def close(served: Served) -> None:
    await served.host.stop()
    await served.server.stop()


@pytest.fixture
async def quiet(tmp_path: Path) -> AsyncIterator[Served]:
    """The quiet fleet, started, its dashboard served on a free loopback port."""
    served = await serve(write_config(tmp_path, QUIET_FLEET))
    try:
        yield served
    finally:
        await close(served)
