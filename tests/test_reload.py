"""Hot reload: rewrite the config while a numbered stream flows; the unchanged subscriber misses nothing."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from citarion_host.host import Host
from citarion_host.plugins import Plugins
from citarion_host.reload import ConfigReloader
from citarion_host.settings import load_config
from tests.bus.conftest import eventually
from tests.host_bots import Numbers, Recorder
from tests.test_host import bot

TOTAL = 1500
BASE = [
    bot("numbers", "Numbers", publish='["analytics.number.>"]', count=TOTAL, pace_s=0.0005),
    bot("steady", "Recorder", subscribe='["analytics.number.>"]'),
]


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    Recorder.seen.clear()
    Recorder.instances.clear()
    Numbers.gate = None
    Numbers.sent = 0
    yield


def write_atomically(path: Path, text: str) -> None:
    """As editors do: write a temporary file, then rename it over the config."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


async def numbers_flow(more: int = 15) -> None:
    target = min(Numbers.sent + more, TOTAL)
    await eventually(lambda: Numbers.sent >= target, what=f"{more} more numbers")


def backend_section(request: pytest.FixtureRequest, backend: str) -> str:
    """``[backend]`` for ``backend``; NATS gets a fresh server from the fixture (never the shared one)."""
    if backend == "memory":
        return '[backend]\ntype = "memory"\n'
    server = request.getfixturevalue("nats_server")
    return f'[backend]\ntype = "nats"\n[backend.nats]\nservers = ["{server.url}"]\nstream = "reload-test"\n'


@pytest.mark.parametrize("backend", ["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def test_ten_rewrites_with_invalid_ones_lose_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest, backend: str
) -> None:
    caplog.set_level(logging.ERROR, logger="citarion_host.reload")
    base = [backend_section(request, backend), *BASE]
    path = tmp_path / "host.toml"
    write_atomically(path, "\n".join(base))
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    reloader = ConfigReloader(host)
    extra = bot("extra", "Recorder", subscribe='["analytics.number.>"]', label="one")
    extra_two = extra.replace('"one"', '"two"')
    steps = [
        ("add", [*base, extra], "applied"),
        ("change params", [*base, extra_two], "applied"),
        ("unknown code", [*base, extra_two.replace('code = "ORA"', 'code = "XYZ"')], "rejected"),
        ("rewire", [*base, extra_two.replace('"analytics.number.>"', '"analytics.>"')], "applied"),
        ("bad toml", [*base, "[[bots]\nid = "], "rejected"),
        ("remove", base, "applied"),
        (
            "add a queue pair",
            [
                *base,
                extra.replace("label", "label").replace("[bots.params]", 'queue = "q"\n[bots.params]'),
                bot("extra2", "Recorder", subscribe='["analytics.number.>"]').replace(
                    "subscribe", 'queue = "q"\nsubscribe'
                ),
            ],
            "applied",
        ),
        (
            "pattern outside the rules",
            [*base, bot("bad", "Recorder", code="GRD", subscribe='["system.>"]')],
            "rejected",
        ),
        ("remove both", base, "applied"),
        ("rewrite unchanged", base, "unchanged"),
    ]
    assert len(steps) == 10
    try:
        for name, parts, expected in steps:
            await numbers_flow()
            write_atomically(path, "\n".join(parts))
            result = await reloader.reload_once()
            assert result.status == expected, (name, result)
            assert host.runners["numbers"].state == "running" and host.runners["steady"].state == "running", (
                name
            )
        await eventually(lambda: len(Recorder.seen["steady"]) >= TOTAL, timeout=60, what="the whole stream")
        numbers = [event.payload["n"] for event in Recorder.seen["steady"]]
        assert numbers == list(range(TOTAL)), "every number exactly once, in order"
        assert Recorder.instances["steady"] == 1, "the unchanged bot was never restarted"
        assert Recorder.instances["extra"] == 3, "added, restarted for params (not for rewiring), added again"
        assert reloader.applied == 6 and reloader.rejected == 3
        logged = "\n".join(r.getMessage() + " " + str(getattr(r, "problem", "")) for r in caplog.records)
        assert "code: unknown bot code 'XYZ'" in logged or "'XYZ'" in logged
        assert "invalid TOML" in logged
        assert "subscribe[0]" in logged
    finally:
        await host.stop()


async def test_the_watcher_applies_an_atomic_rename(tmp_path: Path) -> None:
    path = tmp_path / "host.toml"
    write_atomically(path, "\n".join(BASE))
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    reloader = ConfigReloader(host, debounce_ms=50)
    stop = asyncio.Event()
    watcher = asyncio.create_task(reloader.run(stop))
    try:
        await asyncio.sleep(0.3)  # let the watcher attach (a missed change is retried below)
        for _ in range(20):
            write_atomically(path, "\n".join([*BASE, bot("late", "Recorder", subscribe='["analytics.>"]')]))
            try:
                await eventually(lambda: "late" in host.runners, timeout=1, what="the new bot")
                break
            except AssertionError:
                continue
        assert "late" in host.runners
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 5)
        await host.stop()


PLUGIN_V1 = """
from citarion_host.bot import Bot

class Tagger(Bot):
    type_name = "tagger"
    async def handle(self, event):
        await self.ctx.publish("analytics.tag.added", {"version": 1, "n": event.payload["n"]})
"""


async def test_changed_plugin_source_restarts_only_its_bots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "tagger_plugin.py"
    module.write_text(PLUGIN_V1)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "host.toml"
    tagger = """
[[bots]]
id = "tagger"
code = "ORA"
plugin = "tagger_plugin:Tagger"
publish = ["analytics.tag.>"]
subscribe = ["analytics.number.>"]
"""
    write_atomically(
        path,
        "\n".join(
            [
                "[host]\nwatch_plugins = true\n",
                *BASE,
                tagger,
                bot("tags", "Recorder", subscribe='["analytics.tag.>"]'),
            ]
        ),
    )
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    reloader = ConfigReloader(host)
    try:
        await eventually(lambda: len(Recorder.seen.get("tags", [])) > 5, what="v1 tags")
        module.write_text(PLUGIN_V1.replace('"version": 1', '"version": 2'))
        result = await reloader.reload_once()
        assert result.restarted_for_code == ["tagger"]
        await eventually(lambda: Recorder.seen["tags"][-1].payload["version"] == 2, what="v2 tags")
        assert Recorder.instances["steady"] == 1 and Recorder.instances["tags"] == 1
        await eventually(lambda: len(Recorder.seen["steady"]) >= TOTAL, timeout=20, what="the whole stream")
        assert [e.payload["n"] for e in Recorder.seen["steady"]] == list(range(TOTAL))
    finally:
        await host.stop()
        sys.modules.pop("tagger_plugin", None)
