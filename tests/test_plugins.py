"""Plugin discovery: entry points for real (a package installed with pip), broken and duplicate ones."""

from __future__ import annotations

import json
import os
import re
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


BROKEN_PACKAGE = {
    "pyproject.toml": (
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "citarion-broken"\nversion = "0.1.0"\n'
        '[project.entry-points."citarion.bots"]\nbroken = "citarion_broken"\n'
    ),
    "citarion_broken/__init__.py": "import a_module_that_does_not_exist  # noqa\n",
}


@pytest.mark.slow
def test_a_public_api_plugin_passes_check_and_its_own_tests_beside_a_broken_one(tmp_path: Path) -> None:
    """The example plugin imports only ``citarion_host``'s public names; with a broken plugin installed
    beside it, ``check`` reports the broken one and passes the config using the good one, and the
    plugin's own tests run on the ``bot_harness`` fixture of citarion-host's pytest plugin."""
    source = (REPO / "plugins" / "citarion-echo" / "src" / "citarion_echo" / "__init__.py").read_text()
    imported = {
        line.split()[1]
        for line in source.splitlines()
        if line.startswith(("from citarion_host", "import citarion_host"))
    }
    assert imported == {"citarion_host"}, "public API only"
    site, broken = tmp_path / "site", tmp_path / "broken"
    for name, text in BROKEN_PACKAGE.items():
        (broken / name).parent.mkdir(parents=True, exist_ok=True)
        (broken / name).write_text(text)
    for package in (REPO / "plugins" / "citarion-echo", broken):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
             "--target", str(site), str(package)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    config = tmp_path / "host.toml"
    config.write_text(
        '[[bots]]\nid = "echo"\ncode = "ORA"\nplugin = "echo"\n'
        'subscribe = ["analytics.ping.>"]\npublish = ["analytics.echo.>"]\n'
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    check = subprocess.run(
        [sys.executable, "-m", "citarion_host.cli", "check", "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert (
        "broken" in check.stdout + check.stderr
        and "a_module_that_does_not_exist" in check.stdout + check.stderr
    )
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         str(REPO / "plugins" / "citarion-echo" / "tests")],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "2 passed" in tests.stdout


def test_a_plugin_returning_a_non_bot_type_is_refused_by_name_and_the_others_still_work() -> None:
    """Validated when registered, as pluggy validates hook signatures: the bad plugin is refused
    (with its name) and unregistered, so listing bot types for the others cannot trip over it."""
    from citarion_host.hookspecs import hookimpl
    from citarion_host.plugins import PluginError, Plugins

    class Good:
        @hookimpl
        def citarion_bot_types(self) -> list[type]:
            from tests.host_bots import Recorder

            return [Recorder]

    class Bad:
        @hookimpl
        def citarion_bot_types(self) -> list[type]:
            return [int]

    class BadPayload:
        @hookimpl
        def citarion_payload_types(self) -> dict[str, type]:
            return {"analytics.note.*": dict}

    plugins = Plugins()
    plugins.register(Good(), name="good")
    with pytest.raises(PluginError, match=r"plugin 'bad': citarion_bot_types returned <class 'int'>"):
        plugins.register(Bad(), name="bad")
    with pytest.raises(PluginError, match=r"plugin 'bad-payload': payload type for 'analytics.note.\*'"):
        plugins.register(BadPayload(), name="bad-payload")
    assert set(plugins.bot_types()) == {"test-recorder"}
    assert plugins.resolve("test-recorder").__name__ == "Recorder"


def test_a_bot_whose_handle_is_not_async_is_refused_when_loaded(tmp_path: Path) -> None:
    """A plain ``def handle`` passed ``check``, then ran on every event (its side effects happened)
    and failed each time with "object NoneType can't be used in 'await' expression" until the bot
    was given up. Now loading it says what is wrong: through a plugin, a ``module:object`` path and
    ``check`` alike."""
    from citarion_host.errors import ConfigError
    from citarion_host.hookspecs import hookimpl
    from citarion_host.host import Host
    from citarion_host.plugins import PluginError, Plugins
    from citarion_host.settings import load_config
    from tests.host_bots import PlainHandle

    class Plain:
        @hookimpl
        def citarion_bot_types(self) -> list[type]:
            return [PlainHandle]

    said = "tests.host_bots.PlainHandle.handle must be 'async def' (the host awaits it), not a plain function"
    with pytest.raises(PluginError, match=re.escape(f"plugin 'plain': bot type 'test-plain-handle': {said}")):
        Plugins().register(Plain(), name="plain")
    with pytest.raises(PluginError, match=re.escape(f"plugin 'tests.host_bots:PlainHandle': {said}")):
        Plugins().resolve("tests.host_bots:PlainHandle")
    config = tmp_path / "host.toml"
    config.write_text('[[bots]]\nid = "plain"\ncode = "ORA"\nplugin = "tests.host_bots:PlainHandle"\n')
    loaded = load_config(config)
    with pytest.raises(ConfigError) as caught:
        Host(loaded, plugins=Plugins()).check(loaded)
    assert any("bot 'plain'" in problem and said in problem for problem in caught.value.problems)
    assert PlainHandle.handled == 0


def test_a_modules_hooks_are_found_as_pluggy_finds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host's manager reads a module's ``__dict__`` instead of pluggy's per-name static look-up:
    it finds the same implementations (also one under another name, ``specname``, or a
    ``staticmethod``), and nothing else (plain functions, classes, imported modules, values)."""
    import pluggy

    from citarion_host import hookspecs
    from citarion_host.plugins import get_plugin_manager

    (tmp_path / "mixed_hooks.py").write_text(
        textwrap.dedent(
            """
            import json
            from citarion_host.bot import Bot
            from citarion_host.hookspecs import hookimpl

            class Mixed(Bot):
                type_name = "mixed"

            VALUE = 3
            citarion_domains = ["not", "a", "hook"]

            def helper():
                return 1

            @hookimpl(specname="citarion_bot_types")
            def types_under_another_name():
                return [Mixed]

            @hookimpl
            def citarion_payload_types():
                return {}

            citarion_registry = hookimpl(staticmethod(lambda registry: None))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import mixed_hooks  # type: ignore[import-not-found]

    def found(manager: pluggy.PluginManager) -> list[tuple[str, str]]:
        manager.register(mixed_hooks, name="mixed")
        return sorted(
            (impl.function.__name__, caller.name)
            for caller in manager.get_hookcallers(mixed_hooks) or []
            for impl in caller.get_hookimpls()
        )

    plain = pluggy.PluginManager(hookspecs.PROJECT)
    plain.add_hookspecs(hookspecs)
    ours = found(get_plugin_manager())
    assert ours == found(plain)
    assert ("types_under_another_name", "citarion_bot_types") in ours
    assert len(ours) == 3
