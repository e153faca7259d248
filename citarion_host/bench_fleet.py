"""The fleet benchmark (``citarion-host bench --case fleet --bots N``): how start-up and reload scale.

A fleet of ``N`` bots that do nothing (:class:`IdleBot`), each with three patterns, is written as
one TOML file and taken through what a user does with it: load, ``check``, start on the memory bus,
reload with one bot changed (rewired, then restarted), and stop. Each step is timed once and
printed; nothing is asserted (the machine is shared: figures are read, not tested).

The fleet is wired as a ring so that the check has real work and no warnings (warnings would flood
the log and measure the logger): bot ``i`` publishes ``trading.order.b<i>`` and subscribes the
orders of bot ``i+1`` and one of 50 ticker symbols, fed by one data feed (``LUM``) that publishes
``market.ticker.>``. Every publication has exactly one reader and every subscription one feeder,
so a check that compares every pattern pair does ``(3N)^2`` comparisons, and one that indexes the
patterns does about ``3N`` lookups.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ConfigDict

from .bot import Bot
from .host import Host
from .plugins import Plugins
from .registry import load_registry
from .settings import load_config
from .wiring import check_topology

__all__ = ["IdleBot", "fleet_config", "run_fleet_bench"]

SYMBOLS = 50
_PLUGIN = f"{__name__}:IdleBot"


class IdleBot(Bot):
    """A bot that does nothing: what is measured is the host's work, not the bots'."""

    type_name = "bench-idle"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        generation: int = 0  # changed by the "restart" reload: a definition change


def fleet_config(bots: int, *, rewired: int | None = None, restarted: int | None = None) -> dict[str, Any]:
    """The fleet's config as TOML data: ``bots - 1`` ring members and one data feed.

    ``rewired``: that member subscribes another symbol (a wiring change: rewired in place);
    ``restarted``: that member's params change (a definition change: restarted).
    """
    members = max(bots - 1, 1)
    entries: list[dict[str, Any]] = [
        {"id": "feed", "code": "LUM", "plugin": _PLUGIN, "publish": ["market.ticker.>"]}
    ]
    for index in range(members):
        symbol = (index + (7 if index == rewired else 0)) % SYMBOLS
        entry: dict[str, Any] = {
            "id": f"b{index}",
            "code": "GRD",
            "plugin": _PLUGIN,
            "publish": [f"trading.order.b{index}"],
            "subscribe": [f"market.ticker.s{symbol}", f"trading.order.b{(index + 1) % members}"],
        }
        if index == restarted:
            entry["params"] = {"generation": 1}
        entries.append(entry)
    return {"host": {"summary": False, "progress_interval_s": 0}, "bots": entries}


@contextmanager
def _timer(figures: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    figures[name] = round(time.perf_counter() - start, 4)


async def run_fleet_bench(bots: int = 1_000) -> dict[str, Any]:
    """Time each step once for a fleet of ``bots`` bots; returns the figures in seconds."""
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="citarion-fleet-") as directory:
        path = Path(directory) / "fleet.toml"
        path.write_text(tomli_w.dumps(fleet_config(bots)), encoding="utf-8")
        with _timer(figures, "load_s"):
            loaded = load_config(path)
        with _timer(figures, "check_s"):
            findings = check_topology(loaded, load_registry(), Plugins())
        problems = [str(finding) for finding in findings]
        with _timer(figures, "check_and_start_s"):  # what `run` does: host, check, bus, every bot
            host = Host(loaded, plugins=Plugins())
            host.check(loaded)
            await host.start()
        try:
            for change in ("rewired", "restarted"):
                path.write_text(tomli_w.dumps(fleet_config(bots, **{change: bots // 2})), encoding="utf-8")
                with _timer(figures, f"reload_{change}_load_s"):
                    changed = load_config(path)
                with _timer(figures, f"reload_{change}_apply_s"):
                    diff = await host.apply(changed)
                if getattr(diff, change) == ():
                    problems.append(f"reload {change}: the host saw no {change} bot")
        finally:
            with _timer(figures, "stop_s"):
                await host.stop()
    return {"case": "fleet", "bots": bots, "patterns": 3 * (bots - 1) + 1, **figures, "problems": problems}


def run(bots: int) -> dict[str, Any]:
    """Run the fleet case on a fresh event loop (the CLI's entry)."""
    return asyncio.run(run_fleet_bench(bots))
