"""The run summary tells the truth about delivery: drops per bot, exact, and a lossy bot marked as such.

A slow bot on a concurrent (not deterministic) memory bus loses most of the events a fast feed sends
it; the summary must say how many (published - delivered, exactly) and mark it ``LOSSY``, never ``ok``.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from citarion_host.app import run_host
from citarion_host.bot import Bot
from citarion_host.events import Event
from citarion_host.monitor import format_summary, health
from citarion_host.settings import load_config

EVENTS = 2_000

CONFIG = f"""
[host]
stop_on = "analytics.feed.completed"
summary = false
progress_interval_s = 0

[backend]
deterministic = false

[[bots]]
id = "numbers"
code = "ORA"
plugin = "tests.host_bots:Numbers"
publish = ["analytics.>"]
params = {{ count = {EVENTS}, announce_done = "analytics.feed.completed" }}

[[bots]]
id = "slow"
code = "ORA"
plugin = "tests.test_monitor:Slow"
subscribe = ["analytics.number.emitted"]
max_pending = 10

[[bots]]
id = "fast"
code = "ORA"
plugin = "tests.test_monitor:Fast"
subscribe = ["analytics.number.emitted"]
"""


class Slow(Bot):
    """Takes 20 loop iterations per event: far behind a feed that publishes one per iteration."""

    type_name = "test-slow"

    async def handle(self, event: Event) -> None:
        for _ in range(20):
            await asyncio.sleep(0)


class Fast(Bot):
    """Handles each event inside the publish call: never behind."""

    type_name = "test-fast"

    async def handle(self, event: Event) -> None:
        return None


def test_a_slow_bot_is_shown_lossy_with_its_exact_drop_count(tmp_path: Path) -> None:
    path = tmp_path / "slow.toml"
    path.write_text(CONFIG)
    summary = asyncio.run(run_host(load_config(path), handle_signals=False, out=io.StringIO()))
    rows = {row["bot"]: row for row in summary["bots"]}
    slow, fast = rows["slow"], rows["fast"]
    assert slow["dropped"] == EVENTS - slow["handled"] > EVENTS // 2, slow
    assert slow["delivered"] == slow["handled"]
    assert slow["dropped_by_priority"]["normal"] == slow["dropped"]
    share = round(100 * slow["dropped"] / EVENTS)
    assert slow["health"] == f"LOSSY {share} % dropped"
    assert fast["health"] == "ok" and fast["dropped"] == 0 and fast["handled"] == EVENTS
    text = format_summary(summary)
    assert f"LOSSY {share} % dropped" in text
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert total.split()[-1] == str(slow["dropped"]), "the dropped column is totalled"


def test_health_words() -> None:
    assert health(100, 0) == "ok"
    assert health(4, 96) == "LOSSY 96 % dropped"
    assert health(99_999, 1) == "LOSSY 0.001 % dropped", "one drop is never rounded away"
