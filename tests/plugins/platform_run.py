"""Running ``configs/platform.toml`` for the tests: the CLI (summary, record), and the host in-process
(to put a question to ORA on the bus before the run stops)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from citarion_host.cli import main
from citarion_host.events import Event, catalog
from citarion_host.host import Host
from citarion_host.payloads import Query
from citarion_host.settings import load_config

REPO = Path(__file__).resolve().parents[2]
PLATFORM = REPO / "configs" / "platform.toml"
RECORD = Path("runs") / "platform-events.jsonl"

Run = dict[str, Any]


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_platform(directory: Path) -> Run:
    """``citarion-host --config configs/platform.toml`` in ``directory``: summary, output and record."""
    summary_file = directory / "summary.json"
    out = io.StringIO()
    with working_directory(directory), contextlib.redirect_stdout(out):
        code = main(["--config", str(PLATFORM), "--summary-json", str(summary_file)])
    assert code == 0, out.getvalue()[-2000:]
    summary: Run = json.loads(summary_file.read_text())
    summary["printed"] = out.getvalue()
    summary["record_path"] = directory / RECORD
    summary["recorded"] = [json.loads(line) for line in (directory / RECORD).read_text().splitlines()]
    return summary


async def ask_on_the_host(questions: list[str]) -> tuple[list[Event], list[Event]]:
    """Run the platform on its in-memory bus in-process; when the feed is done, ask ORA each question
    by request/reply; returns (every event of the run, the replies)."""
    events: list[Event] = []
    host = Host(load_config(PLATFORM))
    await host.bus.start()
    await host.bus.subscribe(">", events.append, name="test:recorder", max_pending=1 << 21)
    replies = []
    async with host:
        await asyncio.wait_for(host.finished.wait(), timeout=120)
        await host.bus.settle()
        for question in questions:
            request = catalog.make(
                "analytics.query.asked", Query(question=question, asker="test"), source="TST"
            )
            replies.append(await host.bus.request(request, timeout=10))
    return events, replies
