"""Config pieces and runs for the state tests (memory and JetStream)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from citarion_host.host import Host
from citarion_host.plugins import Plugins
from citarion_host.settings import load_config
from tests.bus.conftest import eventually

FAST_RESTARTS = """
[host]
restart_backoff_s = 0.001
restart_backoff_max_s = 0.002
max_restarts = 1000
progress_interval_s = 0
summary = false
"""


def entry(
    bot_id: str,
    plugin: str,
    *,
    publish: str = "[]",
    subscribe: str = "[]",
    extra: str = "",
    **params: Any,
) -> str:
    """A ``[[bots]]`` entry; ``plugin`` without a module is a ``tests.state_bots`` bot."""
    spec = plugin if ":" in plugin else f"tests.state_bots:{plugin}"
    lines = [
        "[[bots]]",
        f'id = "{bot_id}"',
        'code = "ORA"',
        f'plugin = "{spec}"',
        f"publish = {publish}",
        f"subscribe = {subscribe}",
    ]
    if extra:
        lines.append(extra)
    if params:
        lines.append("[bots.params]")
        for key, value in params.items():
            text = (
                f'"{value}"'
                if isinstance(value, str)
                else str(value).lower()
                if isinstance(value, bool)
                else value
            )
            lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"


def ticks(count: int, **params: Any) -> str:
    return entry("ticks", "Ticks", publish='["analytics.number.>"]', count=count, **params)


def tally(plugin: str = "Tally", *, extra: str = "", **params: Any) -> str:
    return entry(
        "tally",
        plugin,
        publish='["analytics.tally.>"]',
        subscribe='["analytics.number.>"]',
        extra=extra,
        **params,
    )


def orders() -> str:
    return entry("orders", "tests.host_bots:Recorder", subscribe='["analytics.tally.>"]')


def write(path: Path, *parts: str) -> Path:
    path.write_text("\n".join(parts))
    return path


async def start(path: Path) -> Host:
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    return host


async def handled(host: Host, bot_id: str, count: int, timeout: float = 30) -> None:
    """Wait until ``bot_id`` has applied ``count`` events (its state's count)."""
    runner = host.runners[bot_id]
    await eventually(
        lambda: runner.checkpoints is not None and runner.checkpoints.handled >= count,
        timeout=timeout,
        what=f"{bot_id} to apply {count} events",
    )
