"""Plugin discovery: entry points for real (a package installed with pip), broken and duplicate ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from citarion_host.bot import Bot
from citarion_host.plugins import PluginError, Plugins

REPO = Path(__file__).resolve().parents[1]


def make_dist(site: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A minimal installed distribution (dist-info + modules) in ``site``."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = ["[citarion.bots]", *(f"{name} = {value}" for name, value in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))


GOOD = """
    from citarion_host.bot import Bot
    from citarion_host.hookspecs import hookimpl

    class Good(Bot):
        type_name = "good"

    @hookimpl
    def citarion_bot_types():
        return [Good]
"""


def test_broken_entry_point_is_reported_with_its_real_error_and_others_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dist(tmp_path, "goodbots", {"good": "good_plugin"}, {"good_plugin": GOOD})
    make_dist(tmp_path, "badbots", {"bad": "bad_plugin"}, {"bad_plugin": "import no_such_dependency_xyz\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = Plugins.discover()
    assert "good" in plugins.bot_types()
    failures = {info.name: info.error for info in plugins.failures()}
    assert "No module named 'no_such_dependency_xyz'" in (failures.get("bad") or "")
    with pytest.raises(PluginError, match="installed but failed to load: ModuleNotFoundError"):
        plugins.resolve("bad")
    assert issubclass(plugins.resolve("good"), Bot)


def test_entry_point_found_twice_loads_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dist(tmp_path / "a", "goodbots", {"good": "good_plugin"}, {"good_plugin": GOOD})
    make_dist(tmp_path / "b", "goodbots", {"good": "good_plugin"}, {})  # e.g. an editable install's twin
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    plugins = Plugins.discover()
    assert [info.name for info in plugins.infos()].count("good") == 1
    assert not plugins.failures()


def test_entry_point_may_name_a_bot_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dist(tmp_path, "classbots", {"direct": "good_plugin:Good"}, {"good_plugin": GOOD})
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = Plugins.discover()
    assert plugins.resolve("direct").type_name == "good"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope_module_xyz:Bot", "cannot import 'nope_module_xyz': ModuleNotFoundError"),
        ("citarion_host.bot:Nope", "has no attribute 'Nope'"),
        ("citarion_host.bot:NoParams", "is not a subclass of citarion_host.Bot"),
        ("no-colon", "unknown plugin 'no-colon'"),
        ("citarion_host.bot:", "expected 'module:object'"),
    ],
)
def test_bad_plugin_names_say_why(spec: str, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        Plugins().resolve(spec)


SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from citarion_host.host import Host
from citarion_host.settings import load_config

async def main():
    host = Host(load_config(sys.argv[1]))
    seen = []
    async def keep(event):
        seen.append(event.payload)
    await host.bus.start()
    await host.bus.subscribe("analytics.echo.counted", keep)
    await host.start()
    for n in range(6):
        await host.bus.publish(host.bus.catalog.make("analytics.ping.sent", {"n": n}, source="LOG"))
    await host.stop()
    infos = [i for i in host.plugins.infos() if i.name == "echo"]
    print(json.dumps({"counted": seen, "source": infos[0].source, "types": infos[0].bot_types}))

asyncio.run(main())
"""


@pytest.mark.slow
def test_third_party_package_installed_with_pip_is_found_by_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(REPO / "plugins" / "citarion-echo")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    config = tmp_path / "host.toml"
    config.write_text(
        '[[bots]]\nid = "echo"\ncode = "ORA"\nplugin = "echo"\n'
        'subscribe = ["analytics.ping.>"]\npublish = ["analytics.echo.>"]\n[bots.params]\nevery = 3\n'
    )
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, str(script), str(config)], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["types"] == ["echo"]
    assert result["source"].startswith("entry point citarion.bots (citarion-echo 1.0.0)")
    assert [c["total"] for c in result["counted"]] == [3, 6]
    assert result["counted"][-1]["counts"] == {"analytics.ping.sent": 6}
