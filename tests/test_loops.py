"""``[host] event_loop``: ``citarion-host run`` runs on the loop the config names, or says why it cannot."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from citarion_host.cli import main

CONFIG = """
[host]
stop_on = "analytics.feed.completed"
summary = false
progress_interval_s = 0
{event_loop}

[[bots]]
id = "numbers"
code = "ORA"
plugin = "tests.host_bots:Numbers"
publish = ["analytics.>"]
params = {{ count = 3, announce_done = "analytics.feed.completed" }}
"""


def write(tmp_path: Path, event_loop: str | None) -> Path:
    path = tmp_path / "loop.toml"
    path.write_text(CONFIG.format(event_loop=f'event_loop = "{event_loop}"' if event_loop else ""))
    return path


@pytest.mark.parametrize(
    ("event_loop", "expected"),
    [(None, "uvloop"), ("auto", "uvloop"), ("asyncio", "asyncio"), ("uvloop", "uvloop")],
)
def test_run_uses_the_configured_event_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, event_loop: str | None, expected: str
) -> None:
    """On Linux uvloop is a dependency, so ``auto`` (the default) picks it."""
    with caplog.at_level(logging.INFO, logger="citarion_host.loops"):
        assert main(["--log-level", "INFO", "run", "--config", str(write(tmp_path, event_loop))]) == 0
    used = [r for r in caplog.records if r.getMessage() == "event loop"]
    assert [getattr(r, "event_loop", None) for r in used] == [expected]


def test_uvloop_named_but_not_installed_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an interpreter without uvloop sees
    assert main(["run", "--config", str(write(tmp_path, "uvloop"))]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: [host] event_loop = 'uvloop', but uvloop cannot be imported"
    )


def test_auto_without_uvloop_runs_on_asyncio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    with caplog.at_level(logging.INFO, logger="citarion_host.loops"):
        assert main(["--log-level", "INFO", "run", "--config", str(write(tmp_path, "auto"))]) == 0
    assert [getattr(r, "event_loop", None) for r in caplog.records if r.getMessage() == "event loop"] == [
        "asyncio"
    ]


def test_a_bad_event_loop_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(write(tmp_path, "trio"))]) == 1
    assert "host.event_loop: Input should be 'auto', 'asyncio' or 'uvloop'" in capsys.readouterr().err
