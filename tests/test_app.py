"""``run_host`` (``app.py``): what a run says about the options it cannot honour together, and about a
record it cannot write."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from citarion_host.app import run_host
from citarion_host.bench_demo import demo_config
from citarion_host.monitor import RecordError, summary_totals
from citarion_host.settings import load_config

DEV = Path(__file__).resolve().parent.parent / "configs" / "dev.toml"


@pytest.mark.parametrize("reload", [True, False])
async def test_reload_asked_for_with_speed_is_turned_off_with_a_warning(
    reload: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """``--speed`` paces the feeds in memory and turns reload off (a reload would read the file's pace
    back): a run that asked for reload says so in one warning; one that did not stays quiet. The run
    itself goes on to the end."""
    caplog.set_level(logging.WARNING, logger="citarion_host.app")
    summary = await run_host(
        load_config(DEV), reload=reload, speed=1e9, handle_signals=False, out=io.StringIO()
    )
    assert summary["events"] > 0
    warned = [
        r for r in caplog.records if r.name == "citarion_host.app" and "reload is off" in r.getMessage()
    ]
    assert len(warned) == (1 if reload else 0)
    if reload:
        assert warned[0].levelno == logging.WARNING and "--speed" in warned[0].getMessage()


async def test_a_record_that_cannot_be_written_stops_the_record_not_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk under the record (``/dev/full``: every write fails with ENOSPC) used to raise in the
    monitor's handler on every event (a traceback each, 17,000 of them) and end the run without its
    summary. Now one error line, the run goes to its end with the same figures as a run without a
    record, the summary says what the record holds, and ``run_host`` then raises (the CLI exits 1)."""
    caplog.set_level(logging.WARNING)
    reference = await run_host(
        demo_config(DEV, {"type": "memory"}, tmp_path / "ok.jsonl"), handle_signals=False, out=io.StringIO()
    )
    assert reference["record_error"] is None and reference["unrecorded"] == 0
    caplog.clear()
    summary_json = tmp_path / "summary.json"
    with pytest.raises(RecordError) as raised:
        await run_host(
            demo_config(DEV, {"type": "memory"}, Path("/dev/full")),
            handle_signals=False,
            out=io.StringIO(),
            summary_json=summary_json,
        )
    message = str(raised.value)
    assert "[host] record: the record '/dev/full' is incomplete (No space left on device)" in message
    assert f"it holds the run's first 0 events, {reference['events']:,} are missing" in message
    summary = json.loads(summary_json.read_text())
    assert summary["record_error"] == "No space left on device"
    assert summary["unrecorded"] == summary["events"] == reference["events"]
    assert summary_totals(summary) == summary_totals(reference)
    errors = [
        r for r in caplog.records if r.levelno >= logging.ERROR and not r.name.startswith("citarion.bot")
    ]
    assert [(r.name, r.getMessage()) for r in errors] == [
        ("citarion_host.monitor", "the record cannot be written: recording stopped, the run goes on")
    ]
