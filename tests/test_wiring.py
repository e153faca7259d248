"""The wiring check (``citarion_host.wiring``, ``citarion-host check``).

The main test writes one config, with an include, that makes every kind of mistake at once and
asserts that ``check`` reports all of them, each with its file, bot id, key and message. The bots
it names live in a module written to ``tmp_path`` (put on ``sys.path``), next to a plugin module
whose import fails, so the plugin paths are real ``module:object`` imports as in production.

The containment and overlap functions themselves are property-tested against brute force in
``tests/test_topics.py``; here the property tests only check that the wiring check turns them into
findings correctly (a rights error iff the declared pattern is not contained in an allowed one, a
feed warning iff no topic is matched by both patterns), reusing that module's brute-force oracle.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from citarion_host.bench_fleet import fleet_config
from citarion_host.bot import Bot
from citarion_host.cli import main
from citarion_host.errors import ConfigError
from citarion_host.hookspecs import hookimpl
from citarion_host.host import Host
from citarion_host.plugins import Plugins
from citarion_host.registry import BotInfo, BotRegistry, Category, load_registry
from citarion_host.settings import BotConfig, load_config, parse_config
from citarion_host.topics import overlaps
from citarion_host.wiring import (
    HOST_PUBLISHES,
    Finding,
    WiringCheck,
    _key_order,  # the report's key order, to sort the oracle's output
    check_config,
    check_topology,
    format_findings,
    has_errors,
)
from tests.test_topics import SETTINGS, _matched, patterns  # the brute-force oracle

BOTS_MODULE = "wiring_test_bots"
BROKEN_MODULE = "wiring_test_broken"

BOTS_SOURCE = """
from pydantic import BaseModel, ConfigDict, Field

from citarion_host.bot import Bot


class GridBot(Bot):
    type_name = "test-grid"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        levels: int = Field(ge=1)
        spacing: float = 0.5


class ListenerBot(Bot):
    type_name = "test-listener"
"""


@pytest.fixture
def bot_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``wiring_test_bots`` (GridBot, ListenerBot) and ``wiring_test_broken`` (ImportError on import)."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / f"{BOTS_MODULE}.py").write_text(BOTS_SOURCE)
    (modules / f"{BROKEN_MODULE}.py").write_text('raise ImportError("ta-lib is not installed")\n')
    monkeypatch.syspath_prepend(str(modules))
    yield tmp_path
    for name in (BOTS_MODULE, BROKEN_MODULE):
        sys.modules.pop(name, None)


GRID = f"{BOTS_MODULE}:GridBot"
LISTENER = f"{BOTS_MODULE}:ListenerBot"

INCLUDED = f"""
[[bots]]
id = "grid-1"
code = "GRD"
plugin = "{GRID}"
subscribe = ["market.ticker.>"]
publish = ["trading.order.>"]
params = {{ levels = 5 }}

[[bots]]
id = "off"
code = "GRD"
plugin = "{GRID}"
enabled = false
subscribe = ["market.candle.>"]
publish = ["trading.signal.>"]
params = {{ levels = -1 }}
"""

MAIN = f"""
include = ["bots.toml"]

[[bots]]
id = "feed"
code = "LUM"
plugin = "{LISTENER}"
publish = ["market.ticker.>"]

[[bots]]
id = "grid-1"
code = "GRD"
plugin = "{GRID}"
subscribe = ["market.ticker.>"]
params = {{ levels = 3 }}

[[bots]]
id = "typo"
code = "GDR"
plugin = "{LISTENER}"

[[bots]]
id = "ghost"
code = "GRD"
plugin = "no-such-plugin"

[[bots]]
id = "broken"
code = "GRD"
plugin = "{BROKEN_MODULE}:Bot"

[[bots]]
id = "overreach"
code = "GRD"
plugin = "{LISTENER}"
publish = ["risk.alert.>"]
subscribe = ["market.>", "system.>"]

[[bots]]
id = "bad-params"
code = "GRD"
plugin = "{GRID}"
params = {{ levels = 0, spacing = "wide", colour = "red" }}

[[bots]]
id = "lonely"
code = "ORA"
plugin = "{LISTENER}"
subscribe = ["analytics.report.>"]

[[bots]]
id = "shouter"
code = "LOG"
plugin = "{LISTENER}"
publish = ["analytics.decision.>"]

[[bots]]
id = "echo"
code = "WLF"
plugin = "{LISTENER}"
publish = ["system.alert.>"]
subscribe = ["system.>"]

[[bots]]
id = "worker-1"
code = "GRD"
plugin = "{LISTENER}"
queue = "workers"
subscribe = ["market.ticker.>"]

[[bots]]
id = "worker-2"
code = "GRD"
plugin = "{LISTENER}"
queue = "workers"
subscribe = ["market.ticker.>", "trading.order.>"]
"""

# (severity, file, bot id, key, message fragments): the whole report, in order.
EXPECTED = [
    ("error", "main.toml", "grid-1", "id", ["duplicate bot id 'grid-1': also declared in ", "bots.toml"]),
    (
        "error",
        "main.toml",
        "typo",
        "code",
        ["unknown bot or service code 'GDR'", "did you mean 'GRD', MESH?"],
    ),
    ("error", "main.toml", "ghost", "plugin", ["unknown plugin 'no-such-plugin'", "or use 'module:object'"]),
    (
        "error",
        "main.toml",
        "broken",
        "plugin",
        [f"cannot import '{BROKEN_MODULE}': ImportError: ta-lib is not installed"],
    ),
    (
        "error",
        "main.toml",
        "overreach",
        "publish[0]",
        [
            "'risk.alert.>' is not within what GRD (MESH, operational) may publish: trading.signal.>, trading.order.>"
        ],
    ),
    ("warning", "main.toml", "overreach", "publish[0]", ["nobody receives 'risk.alert.>'"]),
    (
        "error",
        "main.toml",
        "overreach",
        "subscribe[1]",
        [
            "'system.>' is not within what GRD (MESH, operational) may subscribe: market.>, risk.>, trading.order.>, trading.position.>"
        ],
    ),
    ("error", "main.toml", "bad-params", "params.colour", ["unknown key"]),
    (
        "error",
        "main.toml",
        "bad-params",
        "params.levels",
        ["Input should be greater than or equal to 1", "(GridBot.Params)"],
    ),
    ("error", "main.toml", "bad-params", "params.spacing", ["Input should be a valid number"]),
    ("warning", "main.toml", "lonely", "subscribe[0]", ["nothing can feed 'analytics.report.>'"]),
    ("warning", "main.toml", "shouter", "publish[0]", ["nobody receives 'analytics.decision.>'"]),
    (
        "warning",
        "main.toml",
        "echo",
        "publish[0]",
        ["'system.alert.>' overlaps the bot's own subscribe[0] 'system.>'"],
    ),
    (
        "warning",
        "main.toml",
        "worker-2",
        "queue",
        [
            "queue group 'workers'",
            "subscribe ['market.ticker.>', 'trading.order.>'] differs from ['market.ticker.>'] of bot 'worker-1'",
        ],
    ),
    ("error", "bots.toml", "off", "params.levels", ["greater than or equal to 1"]),
]


def _write_messy(root: Path) -> Path:
    (root / "bots.toml").write_text(INCLUDED)
    (root / "main.toml").write_text(MAIN)
    return root / "main.toml"


def test_check_reports_every_mistake_at_once(bot_modules: Path) -> None:
    loaded = load_config(_write_messy(bot_modules))
    findings = check_topology(loaded, load_registry(), Plugins())
    got = [(f.severity, Path(f.file).name, f.bot_id, f.key) for f in findings]
    assert got == [expected[:4] for expected in EXPECTED]
    for finding, (*_, fragments) in zip(findings, EXPECTED, strict=True):
        for fragment in fragments:
            assert fragment in finding.message, (finding, fragment)
    assert findings[0].file == str(bot_modules / "main.toml")
    assert findings[0].message.endswith(str(bot_modules / "bots.toml"))
    # the disabled bot is validated but takes no part in the topology: no warning about its patterns
    assert [f.key for f in findings if f.bot_id == "off"] == ["params.levels"]


def test_cli_check_prints_errors_first_then_warnings_and_fails(
    bot_modules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_messy(bot_modules)
    assert main(["check", "--config", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    errors = sum(1 for e in EXPECTED if e[0] == "error")
    assert len(lines) == len(EXPECTED) + 1
    assert [line.split(":")[0] for line in lines[:-1]] == ["error"] * errors + ["warning"] * (
        len(EXPECTED) - errors
    )
    assert lines[-1] == "10 errors, 5 warnings"
    assert f"error: {path}: bot 'ghost': plugin: unknown plugin 'no-such-plugin'" in lines[2]
    assert lines[errors].startswith(f"warning: {path}: bot 'overreach': publish[0]: nobody receives")


def test_cli_check_json(bot_modules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(_write_messy(bot_modules)), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [(d["severity"], d["bot_id"], d["key"]) for d in data] == [(s, b, k) for s, _, b, k, _ in EXPECTED]
    assert set(data[0]) == {"severity", "file", "bot_id", "key", "message", "suggestion"}
    typo = next(d for d in data if d["bot_id"] == "typo")
    assert (typo["key"], typo["suggestion"]) == ("code", "GRD")


CLEAN = f"""
[[bots]]
id = "feed"
code = "LUM"
plugin = "{LISTENER}"
publish = ["market.ticker.>"]

[[bots]]
id = "grid-1"
code = "GRD"
plugin = "{GRID}"
subscribe = ["market.ticker.>"]
params = {{ levels = 4 }}
publish = ["trading.order.submitted"]

[[bots]]
id = "analyst"
code = "LOG"
plugin = "{LISTENER}"
subscribe = ["system.bot.>", "trading.order.submitted"]

[[bots]]
id = "orders"
code = "ORA"
plugin = "{LISTENER}"
queue = "readers"
subscribe = ["trading.order.*"]

[[bots]]
id = "orders-2"
code = "ORA"
plugin = "{LISTENER}"
queue = "readers"
subscribe = ["trading.order.*"]
"""


def test_clean_config_passes(bot_modules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bot_modules / "clean.toml"
    path.write_text(CLEAN)
    assert main(["check", "--config", str(path)]) == 0
    assert capsys.readouterr().out == "0 errors, 0 warnings\n"
    assert main(["check", "--config", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_warnings_alone_exit_zero(bot_modules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bot_modules / "warn.toml"
    path.write_text(f'[[bots]]\nid = "w"\ncode = "LUM"\nplugin = "{LISTENER}"\npublish = ["market.>"]\n')
    assert main(["check", "--config", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"warning: {path}: bot 'w': publish[0]: nobody receives 'market.>': no enabled bot subscribes a matching topic",
        "0 errors, 1 warning",
    ]


def test_durable_on_core_nats_is_a_warning_and_on_memory_nothing(bot_modules: Path) -> None:
    path = bot_modules / "durable.toml"
    bot = f'[[bots]]\nid = "d"\ncode = "ORA"\nplugin = "{LISTENER}"\ndurable = true\n'
    core = '[backend]\ntype = "nats"\n[backend.nats]\njetstream = false\n'
    path.write_text(core + bot)
    findings = check_topology(load_config(path), load_registry(), Plugins())
    assert [(f.severity, f.bot_id, f.key, f.message) for f in findings] == [
        (
            "warning",
            "d",
            "durable",
            "durable has no effect: backend.nats.jetstream is false, nothing is stored: "
            "the bot gets live events only",
        )
    ]
    for backend in ("", '[backend]\ntype = "nats"\n'):  # memory (documented no-op) and JetStream
        path.write_text(backend + bot)
        assert check_topology(load_config(path), load_registry(), Plugins()) == []


def test_files_are_shown_as_the_user_wrote_the_config_path(
    bot_modules: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configs = bot_modules / "configs"
    configs.mkdir()
    (configs / "dev.toml").write_text(
        f'include = "bots.toml"\n[[bots]]\nid = "grid-1"\ncode = "GRD"\nplugin = "{GRID}"\n'
        'publish = ["market.>"]\nparams = { levels = 1 }\n'
    )
    (configs / "bots.toml").write_text(
        f'[[bots]]\nid = "grid-1"\ncode = "GRD"\nplugin = "{GRID}"\nparams = {{ levels = 1 }}\n'
    )
    monkeypatch.chdir(bot_modules)
    assert main(["check", "--config", "configs/dev.toml"]) == 1
    out = capsys.readouterr().out
    assert (
        "error: configs/dev.toml: bot 'grid-1': id: duplicate bot id 'grid-1': also declared in configs/bots.toml\n"
        in out
    )
    assert "error: configs/dev.toml: bot 'grid-1': publish[0]: 'market.>' is not within what GRD" in out


def test_duplicate_in_the_same_file_points_at_the_entry(bot_modules: Path) -> None:
    path = bot_modules / "dup.toml"
    bot = f'[[bots]]\nid = "x"\ncode = "ORA"\nplugin = "{LISTENER}"\n'
    path.write_text(bot * 3)
    findings = check_topology(load_config(path), load_registry(), Plugins())
    assert [(f.key, f.message) for f in findings] == [
        ("id", "duplicate bot id 'x': also declared in bots[0] in the same file"),
        ("id", "duplicate bot id 'x': also declared in bots[0] in the same file"),
    ]


def test_a_config_that_does_not_load_is_reported_line_by_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[host]\nnmae = "x"\n[[bots]]\nid = "a"\ncode = "GRD"\nplugin = "p"\npublish = ["a.>.b"]\n'
        '[[bots]]\ncode = "GRD"\nplugin = "p"\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert main(["check", "--config", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    # printed as the loader wrote them; an entry without an id gets a key path instead (bots[1].id);
    # then what the wiring check found in the entries that loaded ('a', with its valid keys)
    loader = [f"error: {problem}" for problem in raised.value.problems]
    assert f"error: {path}: bots[1].id: Field required" in loader
    assert lines[: len(loader)] == loader
    assert [line.split(": ")[2:4] for line in lines[len(loader) : -1]] == [["bot 'a'", "plugin"]]
    assert lines[-1] == f"{len(loader) + 1} errors, 0 warnings"
    assert main(["check", "--config", str(path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert {(d["bot_id"], d["key"]) for d in data} >= {
        (None, "host.nmae"),
        ("a", "publish[0]"),
        (None, "bots[1].id"),
    }


MALFORMED = f"""
[[bots]]
id = "grid-1"
code = "GRD"
plugin = "{GRID}"
publish = ["trading.>.x", "risk.alert.>"]
subscribe = ["market.ticker.{"x" * 300}", "market.ticker.>"]
params = {{ levels = 0 }}
max_pending = 0

[[bots]]
id = "typo"
code = "GDR"
plugin = "{LISTENER}"
subscribe = ["{".".join(["a"] * 17)}"]

[[bots]]
id = "grid-1"
code = "GRD"
plugin = "no-such-plugin"

[[bots]]
code = "GRD"
plugin = "{LISTENER}"
publish = ["risk.>"]
"""


def test_a_malformed_pattern_hides_no_other_mistake(
    bot_modules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 10: ``check`` stopped at the file's malformed patterns; now every entry that loads is
    checked too: rights, codes, plugins, params and duplicate ids, next to the malformed patterns."""
    path = bot_modules / "malformed.toml"
    path.write_text(MALFORMED)
    findings = check_config(path, Plugins())
    got = [(f.bot_id, f.key) for f in findings]
    assert got == [
        # the loader: what does not parse or fit its type (over-long and too many tokens included)
        ("grid-1", "publish[0]"),
        ("grid-1", "subscribe[0]"),
        ("grid-1", "max_pending"),
        ("typo", "subscribe[0]"),
        (None, "bots[3].id"),
        # the wiring check of the entries that loaded, in file order (the one without an id is out)
        ("grid-1", "publish[1]"),
        ("grid-1", "params.levels"),
        ("typo", "code"),
        ("grid-1", "id"),
        ("grid-1", "plugin"),
    ]
    assert all(f.severity == "error" for f in findings)
    messages = dict(zip(got, (f.message for f in findings), strict=True))
    assert "'>' must be the last token" in messages["grid-1", "publish[0]"]
    assert "bytes long, over the limit of 255" in messages["grid-1", "subscribe[0]"]
    assert "has 17 tokens, over the limit of 16" in messages["typo", "subscribe[0]"]
    assert "'risk.alert.>' is not within what GRD" in messages["grid-1", "publish[1]"]
    assert main(["check", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.endswith("10 errors, 0 warnings\n")
    [long_line] = [line for line in out.splitlines() if "over the limit of 255" in line]
    assert "x" * 61 not in long_line  # an over-long pattern is quoted by its start, not echoed whole


@pytest.mark.parametrize("name", ["missing.toml", "."])
def test_missing_config_fails_loudly_with_the_path(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    assert main(["check", "--config", str(path)]) == 1
    assert capsys.readouterr().out.startswith(f"error: {path}: no such config file")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"dev.toml": '[[bots]]\nid = "grid-1"\ncode = "GRD"\nplugin = "p"\nparams = 3\n'},
            [("dev.toml", "grid-1", "params", "Input should be a valid dictionary")],
        ),
        (
            {"dev.toml": '[[bots]]\ncode = "GRD"\nplugin = "p"\n'},
            [("dev.toml", None, "bots[0].id", "Field required")],
        ),
        (
            {"dev.toml": '[backend]\ntype = "kafka"\n'},
            [("dev.toml", None, "backend.type", "Input should be 'memory' or 'nats'")],
        ),
        ({"dev.toml": "[backend\n"}, [("dev.toml", None, "", "invalid TOML: ")]),
        (
            {"dev.toml": 'include = "nope.toml"\n'},
            [("dev.toml", None, "", "include {dir}/nope.toml: no such")],
        ),
        ({"dev.toml": "include = [1]\n"}, [("dev.toml", None, "include", "must be a file name or a list")]),
        ({}, [("dev.toml", None, "", "no such config file")]),
    ],
)
def test_the_loader_hands_structured_findings_to_the_cli(
    tmp_path: Path,
    files: dict[str, str],
    expected: list[tuple[str, str | None, str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """File, bot id and key travel as fields from the loader to ``check --json``; the text output
    prints the same findings, and ConfigError carries them too (its str() stays one line)."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "dev.toml"
    want = [(str(tmp_path / f), bot, key, m.format(dir=tmp_path)) for f, bot, key, m in expected]
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    got = [(f.file, f.bot_id, f.key, f.message) for f in raised.value.findings]
    assert [g[:3] for g in got] == [w[:3] for w in want]
    assert all(g[3].startswith(w[3]) for g, w in zip(got, want, strict=True)), got
    assert "\n" not in str(raised.value)
    assert raised.value.problems == [finding.text for finding in raised.value.findings]
    assert main(["check", "--config", str(path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [(d["file"], d["bot_id"], d["key"], d["message"]) for d in data][: len(got)] == got
    assert main(["check", "--config", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[: len(got)] == [str(finding) for finding in raised.value.findings]


# --- plugins found by type name, and plugins extending the registry --------------------------------


class MoodBot(Bot):
    type_name = "mood"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        window: int = Field(default=10, ge=1)


class MoodPlugin:
    @hookimpl
    def citarion_bot_types(self) -> list[type[Bot]]:
        return [MoodBot]

    @hookimpl
    def citarion_registry(self, registry: BotRegistry) -> None:
        registry.add_category(
            Category(
                id="sentiment", name="Sentiment", publish=("analytics.sentiment.>",), subscribe=("market.>",)
            )
        )
        registry.register(BotInfo(code="MOOD", name="Mood", category="sentiment"))


class BrokenRegistryPlugin:
    @hookimpl
    def citarion_registry(self, registry: BotRegistry) -> None:
        raise RuntimeError("category table missing")


MOOD_CONFIG = """
[[bots]]
id = "mood"
code = "MOOD"
plugin = "mood"
subscribe = ["market.>"]
publish = ["analytics.sentiment.score"]
params = { window = 0 }
"""


def test_plugins_extend_the_registry_before_the_check(tmp_path: Path) -> None:
    path = tmp_path / "mood.toml"
    path.write_text(MOOD_CONFIG)
    plugins = Plugins()
    plugins.register(MoodPlugin(), "mood-plugin")
    findings = check_config(path, plugins)
    # the code is known and the type found by name: the only error is the params (keys in config order)
    assert [(f.severity, f.key) for f in findings] == [
        ("warning", "publish[0]"),
        ("warning", "subscribe[0]"),
        ("error", "params.window"),
    ]
    # without the plugin the code is unknown and so is the type name
    assert [f.key for f in check_config(path, Plugins()) if f.severity == "error"] == ["code", "plugin"]


def test_a_failing_registry_hook_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "mood.toml"
    path.write_text(MOOD_CONFIG)
    plugins = Plugins()
    plugins.register(BrokenRegistryPlugin(), "broken-registry")
    findings = check_config(path, plugins)
    assert (
        str(findings[0]) == f"error: {path}: a plugin's citarion_registry hook failed: category table missing"
    )
    assert [f.key for f in findings[1:] if f.severity == "error"] == ["code", "plugin"]


# --- Finding and formatting ------------------------------------------------------------------------


def test_finding_text_and_dict() -> None:
    finding = Finding("error", "configs/dev.toml", "grid-1", "publish[0]", "'risk.>' is not within ...")
    assert str(finding) == "error: configs/dev.toml: bot 'grid-1': publish[0]: 'risk.>' is not within ..."
    assert finding.to_dict() == {
        "severity": "error",
        "file": "configs/dev.toml",
        "bot_id": "grid-1",
        "key": "publish[0]",
        "message": "'risk.>' is not within ...",
        "suggestion": None,
    }
    assert str(Finding("warning", "a.toml", None, "", "m")) == "warning: a.toml: m"


def test_format_findings_sorts_errors_first_and_counts() -> None:
    w = Finding("warning", "a.toml", "x", "publish[0]", "w")
    e = Finding("error", "a.toml", "y", "code", "e")
    assert format_findings([w, e, w]) == "\n".join([str(e), str(w), str(w), "1 error, 2 warnings"])
    assert format_findings([]) == "0 errors, 0 warnings"
    assert has_errors([w, e]) and not has_errors([w]) and not has_errors([])


def test_host_topics_feed_subscriptions() -> None:
    assert "system.bot.>" in HOST_PUBLISHES and "system.deadletter.>" in HOST_PUBLISHES
    config = parse_config(
        {"bots": [{"id": "l", "code": "LOG", "plugin": "p", "subscribe": ["system.bot.failed"]}]},
        Path("h.toml"),
    )
    plugins = Plugins()
    plugins.register(_OnePlugin(), "p")
    assert check_topology(config, load_registry(), plugins) == []


# --- properties: findings follow brute-force containment and overlap ------------------------------


class PropBot(Bot):
    type_name = "p"


class _OnePlugin:
    @hookimpl
    def citarion_bot_types(self) -> list[type[Bot]]:
        return [PropBot]


def _prop_registry(publish: tuple[str, ...], subscribe: tuple[str, ...]) -> BotRegistry:
    return BotRegistry(
        categories=[Category(id="prop", name="Prop", publish=publish, subscribe=subscribe)],
        bots=[BotInfo(code="PRP", name="Prop", category="prop")],
    )


_PROP_PLUGINS = Plugins()
_PROP_PLUGINS.register(_OnePlugin(), "p")


@SETTINGS
@given(st.lists(patterns(), min_size=0, max_size=3), patterns(), st.sampled_from(["publish", "subscribe"]))
def test_rights_error_iff_not_contained_in_an_allowed_pattern(
    allowed: list[str], declared: str, field: str
) -> None:
    rights = (tuple(allowed), ()) if field == "publish" else ((), tuple(allowed))
    loaded = parse_config(
        {"bots": [{"id": "b", "code": "PRP", "plugin": "p", field: [declared]}]}, Path("p.toml")
    )
    errors = [
        f for f in check_topology(loaded, _prop_registry(*rights), _PROP_PLUGINS) if f.severity == "error"
    ]
    contained = any(_matched(declared) <= _matched(outer) for outer in allowed)
    assert [f.key for f in errors] == ([] if contained else [f"{field}[0]"]), (allowed, declared)


@SETTINGS
@given(patterns(), patterns())
def test_feed_warnings_iff_no_common_topic(published: str, subscribed: str) -> None:
    bots = [
        {"id": "pub", "code": "PRP", "plugin": "p", "publish": [published]},
        {"id": "sub", "code": "PRP", "plugin": "p", "subscribe": [subscribed]},
    ]
    loaded = parse_config({"bots": bots}, Path("p.toml"))
    findings = check_topology(loaded, _prop_registry((">",), (">",)), _PROP_PLUGINS)
    connected = not _matched(published).isdisjoint(_matched(subscribed))
    # the host's system.* topics lie outside the oracle's universe; overlaps() is proven against brute
    # force in test_topics, so it may decide that part (e.g. '*.>' is fed by 'system.bot.>')
    host_fed = any(overlaps(subscribed, topic) for topic in HOST_PUBLISHES)
    expected = [] if connected else [("pub", "publish[0]")] + ([] if host_fed else [("sub", "subscribe[0]")])
    assert [(f.bot_id, f.key) for f in findings] == expected, (published, subscribed)
    assert all(f.severity == "warning" for f in findings)


# --- scale: the indexed, incremental check gives the brute force's findings ------------------------


def _brute_force_warnings(bots: list[BotConfig]) -> list[tuple[str, str, str]]:
    """The topology warnings as the check computed them before it was indexed: every pattern
    compared with every pattern (quadratic; kept here as the oracle). ``(bot id, key, message)``
    in report order (bot order, then key order, stable)."""
    enabled = [(index, bot) for index, bot in enumerate(bots) if bot.enabled]
    published = [*(p for _, bot in enabled for p in bot.publish), *HOST_PUBLISHES]
    subscribed = [p for _, bot in enabled for p in bot.subscribe]
    warnings: list[tuple[int, str, str]] = []
    for index, bot in enabled:
        for position, pattern in enumerate(bot.subscribe):
            if not any(overlaps(pattern, p) for p in published):
                why = "no enabled bot publishes a matching topic, nor does the host"
                warnings.append((index, f"subscribe[{position}]", f"nothing can feed {pattern!r}: {why}"))
        for position, pattern in enumerate(bot.publish):
            if not any(overlaps(pattern, s) for s in subscribed):
                why = "no enabled bot subscribes a matching topic"
                warnings.append((index, f"publish[{position}]", f"nobody receives {pattern!r}: {why}"))
            for other, subscription in enumerate(bot.subscribe):
                if overlaps(pattern, subscription):
                    message = (
                        f"{pattern!r} overlaps the bot's own subscribe[{other}] {subscription!r}:"
                        " it receives its own events (skip them by source, or narrow a pattern)"
                    )
                    warnings.append((index, f"publish[{position}]", message))
    groups: dict[str, list[BotConfig]] = {}
    for index, bot in enabled:
        if bot.queue is not None:
            first = groups.setdefault(bot.queue, [bot])[0]
            if set(bot.subscribe) != set(first.subscribe):
                message = (
                    f"queue group {bot.queue!r}: subscribe {bot.subscribe} differs from"
                    f" {first.subscribe} of bot {first.id!r}; members share the work only where"
                    " their subscriptions match"
                )
                warnings.append((index, "queue", message))
    warnings.sort(key=lambda warning: (warning[0], _key_order(warning[1])))
    return [(bots[index].id, key, message) for index, key, message in warnings]


_TOKENS = ("system", "bot", "a")  # 'system' and 'bot' reach the host's own system.bot.> and co.


@st.composite
def _bot_entries(draw: st.DrawFn, index: int) -> dict[str, Any]:
    pattern_lists = st.lists(patterns(_TOKENS), max_size=3)
    return {
        "id": draw(st.sampled_from([f"b{index}", f"b{index}", "dup"])),  # duplicate ids now and then
        "code": "PRP",
        "plugin": "p",
        "enabled": draw(st.booleans()) or draw(st.booleans()),
        "publish": draw(pattern_lists),
        "subscribe": draw(pattern_lists),
        "queue": draw(st.sampled_from([None, None, "q1", "q2"])),
    }


@st.composite
def _fleets(draw: st.DrawFn) -> list[dict[str, Any]]:
    size = draw(st.integers(min_value=0, max_value=8))
    return [draw(_bot_entries(index)) for index in range(size)]


@st.composite
def _edits(draw: st.DrawFn, fleet: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A reload: one bot changed (patterns, enabled, queue), added or removed."""
    fleet = [dict(entry) for entry in fleet]
    kind = draw(st.sampled_from(["change", "change", "add", "remove"]))
    if kind == "add" or not fleet:
        fleet.insert(draw(st.integers(0, len(fleet))), draw(_bot_entries(len(fleet) + 10)))
    elif kind == "remove":
        del fleet[draw(st.integers(0, len(fleet) - 1))]
    else:
        position = draw(st.integers(0, len(fleet) - 1))
        changed = draw(_bot_entries(position))
        key = draw(st.sampled_from(["publish", "subscribe", "enabled", "queue"]))
        fleet[position] = {**fleet[position], key: changed[key]}
    return fleet


_FLEET_REGISTRY = _prop_registry((">",), (">",))


@settings(SETTINGS, max_examples=250)  # each example checks up to four configs, twice
@given(st.data())
def test_indexed_incremental_check_equals_brute_force(data: st.DataObject) -> None:
    """Issue 12: the check no longer compares every pattern pair and re-checks only what a reload
    changes. On random fleets and random one-bot reloads, its warnings are the quadratic check's,
    and the incremental check (one WiringCheck across reloads, as the host uses it) returns exactly
    what a fresh check returns."""
    fleet = data.draw(_fleets())
    incremental = WiringCheck(_FLEET_REGISTRY, _PROP_PLUGINS)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        loaded = parse_config({"bots": fleet}, Path("fleet.toml"))
        fresh = check_topology(loaded, _FLEET_REGISTRY, _PROP_PLUGINS)
        assert incremental.check(loaded) == fresh
        warnings = [(f.bot_id, f.key, f.message) for f in fresh if f.severity == "warning"]
        assert warnings == _brute_force_warnings(loaded.config.bots)
        fleet = data.draw(_edits(fleet))


def test_the_incremental_check_notices_registry_and_plugin_changes(bot_modules: Path) -> None:
    """Remembered per-bot answers are dropped when the registry entry or the bot class changes,
    not only when the config entry does."""
    path = bot_modules / "one.toml"
    path.write_text(f'[[bots]]\nid = "g"\ncode = "GRD"\nplugin = "{GRID}"\npublish = ["risk.alert.x"]\n')
    registry, plugins = load_registry(), Plugins()
    wiring = WiringCheck(registry, plugins)
    loaded = load_config(path)
    assert [f.key for f in wiring.check(loaded) if f.severity == "error"] == ["publish[0]", "params.levels"]
    registry.extend_rules(bot="GRD", publish=["risk.alert.>"])  # a new registry entry for GRD
    assert [f.key for f in wiring.check(loaded) if f.severity == "error"] == ["params.levels"]
    (bot_modules / "modules" / f"{BOTS_MODULE}.py").write_text(BOTS_SOURCE.replace("Field(ge=1)", "1"))
    plugins.load_path(GRID, reimport=True)  # a new GridBot class, as a plugin-code reload makes
    assert [f for f in wiring.check(loaded) if f.severity == "error"] == []
    assert wiring.check(loaded) == check_topology(loaded, registry, plugins)


async def test_host_reload_is_checked_incrementally_and_refused_with_findings(tmp_path: Path) -> None:
    """The host keeps one WiringCheck: a reload breaking one bot of a fleet is refused with that
    bot's findings as objects, the running topology stays, and the next valid reload applies."""
    path = tmp_path / "fleet.toml"
    path.write_text(tomli_w.dumps(fleet_config(40)))
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    try:
        broken = fleet_config(40)
        broken["bots"][5]["publish"] = ["risk.alert.x"]
        path.write_text(tomli_w.dumps(broken))
        with pytest.raises(ConfigError) as refused:
            await host.apply(load_config(path))
        assert [(f.severity, f.bot_id, f.key) for f in refused.value.findings] == [
            ("error", "b4", "publish[0]")
        ]
        assert "1 wiring errors" in str(refused.value)
        assert host.runners["b4"].config.publish == ["trading.order.b4"]
        path.write_text(tomli_w.dumps(fleet_config(40, rewired=4)))
        diff = await host.apply(load_config(path))
        assert [bot.id for bot in diff.rewired] == ["b4"]
        assert host.check(host.loaded) == check_topology(host.loaded, host.registry, host.plugins) == []
    finally:
        await host.stop()
