"""``run_host`` (``app.py``): what a run says about the options it cannot honour together."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from citarion_host.app import run_host
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
