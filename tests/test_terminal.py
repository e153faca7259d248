"""What a run prints: rich's live view and summary table on a terminal, plain stable text elsewhere."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from citarion_host.app import run_host
from citarion_host.logs import configure_logging
from citarion_host.monitor import format_summary
from citarion_host.settings import load_config
from citarion_host.terminal import is_terminal

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "configs" / "paper-trading.toml"


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal (rich then draws its live view)."""

    def isatty(self) -> bool:
        return True


def run(out: io.StringIO, tmp_path: Path) -> dict[str, object]:
    configure_logging("WARNING", "text", io.StringIO())  # as the CLI does (the fixture restores it)
    loaded = load_config(PAPER, environ={"CITARION_HOST__PROGRESS_INTERVAL_S": "0.2"})
    return asyncio.run(run_host(loaded, out=out, handle_signals=False, summary_json=tmp_path / "s.json"))


def test_a_pipe_gets_plain_lines_and_the_fixed_width_table(tmp_path: Path) -> None:
    out = io.StringIO()
    summary = run(out, tmp_path)
    text = out.getvalue()
    assert not is_terminal(out)
    assert "\x1b[" not in text  # no escape codes in a pipe
    assert format_summary(summary) in text
    total = next(line for line in text.splitlines() if line.startswith("total"))
    handled = sum(row["handled"] for row in summary["bots"])  # type: ignore[union-attr, index]
    assert f"{handled}" in total
    assert json.loads((tmp_path / "s.json").read_text())["events"] == summary["events"]


def test_a_terminal_gets_the_live_view_and_a_summary_table_with_totals(tmp_path: Path) -> None:
    out = Terminal()
    summary = run(out, tmp_path)
    text = out.getvalue()
    assert "\x1b[" in text  # drawn in place
    assert "replay" in text and "risk alerts:" in text  # the progress bar, alerts counted by kind
    assert "bot log lines:" in text  # the bots' log lines counted, not flooding the screen
    assert "ALERT critical" not in text.split("run summary")[0].split("bot log lines:")[0]
    assert "run summary" in text and "tot" in text  # a narrow terminal cuts "total" to "tot…"
    for row in summary["bots"]:  # type: ignore[union-attr]
        assert row["bot"] in text  # type: ignore[index]
    assert json.loads((tmp_path / "s.json").read_text())["events"] == summary["events"]
