"""Hot reload under abuse: broken, empty, cut-short, non-UTF-8 and hanging configs never stop the
reloader nor touch the running topology, and the next valid edit is applied (docs/reload.md)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from citarion_host.hookspecs import hookimpl
from citarion_host.host import Host
from citarion_host.plugins import Plugins
from citarion_host.reload import ConfigReloader
from citarion_host.settings import load_config
from tests.bus.conftest import eventually
from tests.host_bots import IMPORT_GATE, Numbers, Recorder
from tests.test_host import bot

HOST = "[host]\nreload_debounce_s = 0.05\nplugin_import_timeout_s = 0.5\n"
RECORDERS = ["steady", "r1", "r2", "r3", "r4"]
#: Six bots; every recorder carries a label with multi-byte characters, so cuts can split one.
GOOD = HOST + "".join(
    [
        bot("numbers", "Numbers", publish='["analytics.number.>"]', count=100_000, pace_s=0.002),
        *(bot(r, "Recorder", subscribe='["analytics.number.>"]', label="ünïcødé ✓ €") for r in RECORDERS),
    ]
)
HANGS = "hang_at_import"


@pytest.fixture(autouse=True)
def _reset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    Recorder.seen.clear()
    Recorder.instances.clear()
    Numbers.gate = None
    Numbers.sent = 0
    IMPORT_GATE.clear()
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    (plugin_dir / f"{HANGS}.py").write_text(
        "from tests.host_bots import import_hangs, Recorder\nimport_hangs()\nHung = Recorder\n"
    )
    monkeypatch.syspath_prepend(str(plugin_dir))
    yield
    IMPORT_GATE.set()  # the import thread left behind finishes
    sys.modules.pop(HANGS, None)


def write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def hanging_plugin(text: str) -> str:
    return text + bot("hung", "Recorder", subscribe='["analytics.>"]').replace(
        "tests.host_bots:Recorder", f"{HANGS}:Hung"
    )


def bad_versions(good: str) -> list[tuple[str, bytes]]:
    """Every kind of bad config a reload can meet, as bytes (what is on disk)."""
    data = good.encode()
    second_bot = data.index(b"[[bots]]", data.index(b"[[bots]]") + 1)
    third_bot = data.index(b"[[bots]]", second_bot + 1)
    in_char = data.index("ü".encode()) + 1  # inside a two-byte character
    return [
        ("empty", b""),
        ("blank", b"\n  \n"),
        ("cut between two [[bots]] entries", data[:third_bot]),
        ("cut inside a multi-byte character", data[:in_char]),
        ("cut inside a key", data[: second_bot + 12]),
        ("not UTF-8", data[:40] + b"\xff\xfe\x80" + data[40:]),
        ("latin-1 label", good.replace("ünïcødé", "caf\xe9").encode("latin-1", errors="replace")),
        ("deep arrays", data + b"deep = " + b"[" * 200 + b"]" * 200 + b"\n"),
        ("very deep arrays", data + b"deep = " + b"[" * 5000 + b"]" * 5000 + b"\n"),
        ("deep tables", data + b"[" + b".".join([b"t"] * 100) + b"]\n"),
        ("broken TOML", data + b"[[bots]\nid = \n"),
        ("unknown key", data.replace(b"[host]\n", b"[host]\nnmae = 1\n")),
        ("plugin hangs at import", hanging_plugin(good).encode()),
        ("NUL bytes", data[:30] + b"\x00" * 8 + data[30:]),
    ]


def logged_problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [str(getattr(r, "problem", "")) for r in caplog.records if r.name == "citarion_host.reload"]


async def start_host(path: Path) -> Host:
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    return host


async def test_fifty_rapid_rewrites_keep_the_running_topology_and_the_next_valid_edit_applies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="citarion_host.reload")
    path = tmp_path / "host.toml"
    path.write_text(GOOD, encoding="utf-8")
    host = await start_host(path)
    reloader = ConfigReloader(host)
    stop = asyncio.Event()
    watcher = asyncio.create_task(reloader.run(stop))
    versions = bad_versions(GOOD)
    shuffle = random.Random(10)
    try:
        await asyncio.sleep(0.3)  # let the watcher attach
        written = []
        for round_ in range(50):
            name, data = versions[round_ % len(versions)] if round_ < 49 else versions[5]  # last: not UTF-8
            if shuffle.random() < 0.5:
                path.write_bytes(data)  # in place: truncated first, so an empty file is seen for a moment
            else:
                write_atomically(path, data)
            written.append(name)
            await asyncio.sleep(shuffle.choice([0, 0.001, 0.01, 0.03, 0.08]))
        await eventually(reloader.up_to_date, timeout=20, what="the reloader to read the last rewrite")
        await asyncio.sleep(0.3)  # a round still running (a hanging import) ends
        assert not watcher.done(), "the reloader died"
        assert sorted(host.runners) == sorted(["numbers", *RECORDERS]), "the running topology stays"
        assert all(runner.state == "running" for runner in host.runners.values())
        assert all(Recorder.instances[r] == 1 for r in RECORDERS), "no bot was restarted"
        assert reloader.applied == 0 and reloader.rejected >= 1
        problems = "\n".join(logged_problems(caplog))
        assert "not valid UTF-8" in problems
        assert "Traceback" not in caplog.text and reloader.failed == 0

        write_atomically(path, (GOOD + bot("late", "Recorder", subscribe='["analytics.>"]')).encode())
        await eventually(lambda: "late" in host.runners, timeout=20, what="the next valid edit")
        assert reloader.applied == 1 and not watcher.done()
        await eventually(lambda: len(Recorder.seen["late"]) > 3, what="the new bot to receive events")
        numbers = [event.payload["n"] for event in Recorder.seen["steady"]]
        assert numbers == list(range(len(numbers))), "the unchanged bot missed nothing"
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 10)
        await host.stop()


@pytest.mark.parametrize("name", [name for name, _ in bad_versions(GOOD)])
async def test_each_bad_version_is_refused_with_one_line_then_the_next_valid_edit_applies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    caplog.set_level(logging.ERROR, logger="citarion_host.reload")
    path = tmp_path / "host.toml"
    path.write_text(GOOD, encoding="utf-8")
    host = await start_host(path)
    reloader = ConfigReloader(host)
    try:
        data = dict(bad_versions(GOOD))[name]
        write_atomically(path, data)
        result = await reloader.reload_once()
        assert result.status == "rejected", result
        problems = logged_problems(caplog)
        assert problems and all("\n" not in p and "Traceback" not in p for p in problems), problems
        assert sorted(host.runners) == sorted(["numbers", *RECORDERS])
        write_atomically(path, (GOOD + bot("late", "Recorder")).encode())
        assert (await reloader.reload_once()).status == "applied"
        assert "late" in host.runners and all(Recorder.instances[r] == 1 for r in RECORDERS)
    finally:
        await host.stop()


async def test_refusals_say_why(tmp_path: Path) -> None:
    path = tmp_path / "host.toml"
    path.write_text(GOOD, encoding="utf-8")
    host = await start_host(path)
    reloader = ConfigReloader(host)
    versions = dict(bad_versions(GOOD))
    try:
        expected = {
            "empty": f"{path}: the file is empty (still being written?); not applied",
            "cut between two [[bots]] entries": "would stop 4 of 6 running bots (r1, r2, r3, r4), more than"
            " [host] reload_max_removed_share = 0.5 of them (a write cut short?); not applied.",
            "cut inside a multi-byte character": "a character cut short at the end",
            "not UTF-8": "not valid UTF-8: byte 0xff at line",
            "very deep arrays": "nested too deeply",
            "deep tables": "nested too deeply",
            "plugin hangs at import": "did not finish within 0.5s (plugin_import_timeout_s)",
        }
        for name, text in expected.items():
            write_atomically(path, versions[name])
            result = await reloader.reload_once()
            assert result.status == "rejected" and any(text in e for e in result.errors), (name, result)
    finally:
        await host.stop()


async def test_a_config_may_remove_most_bots_when_it_says_so(tmp_path: Path) -> None:
    path = tmp_path / "host.toml"
    path.write_text(GOOD, encoding="utf-8")
    host = await start_host(path)
    reloader = ConfigReloader(host)
    first_two = dict(bad_versions(GOOD))["cut between two [[bots]] entries"].decode()
    try:
        write_atomically(path, first_two.encode())
        result = await reloader.reload_once()
        assert result.status == "rejected"
        assert "reload_max_removed_share = 0.5" in result.errors[0]
        write_atomically(
            path, first_two.replace("[host]\n", "[host]\nreload_max_removed_share = 1\n").encode()
        )
        result = await reloader.reload_once()
        assert result.status == "applied" and result.diff is not None
        assert sorted(result.diff.removed) == ["r1", "r2", "r3", "r4"]
        assert sorted(host.runners) == ["numbers", "steady"]
    finally:
        await host.stop()


class _FailsOnce:
    """A real plugin whose ``citarion_topology_applied`` hook raises the first time."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def citarion_topology_applied(self, host: Any, added: Any, removed: Any, changed: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("plugin hook bug")


async def test_an_unexpected_exception_in_a_round_is_logged_and_the_watcher_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="citarion_host.reload")
    path = tmp_path / "host.toml"
    path.write_text(GOOD, encoding="utf-8")
    host = await start_host(path)
    failing = _FailsOnce()
    host.plugins.register(failing, "fails-once")
    reloader = ConfigReloader(host)
    stop = asyncio.Event()
    watcher = asyncio.create_task(reloader.run(stop))
    try:
        await asyncio.sleep(0.3)
        write_atomically(path, (GOOD + bot("one", "Recorder")).encode())
        await eventually(lambda: reloader.failed == 1, timeout=20, what="the failing round")
        assert "reload failed; watching for the next change" in caplog.text
        write_atomically(path, (GOOD + bot("one", "Recorder") + bot("two", "Recorder")).encode())
        await eventually(lambda: "two" in host.runners, timeout=20, what="the next edit")
        assert failing.calls == 2 and not watcher.done()
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 10)
        await host.stop()
