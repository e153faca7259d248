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

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from citarion_host.bot import Bot
from citarion_host.cli import main
from citarion_host.errors import ConfigError
from citarion_host.hookspecs import hookimpl
from citarion_host.plugins import Plugins
from citarion_host.registry import BotInfo, BotRegistry, Category, load_registry
from citarion_host.settings import load_config, parse_config
from citarion_host.topics import overlaps
from citarion_host.wiring import (
    HOST_PUBLISHES,
    Finding,
    check_config,
    check_topology,
    findings_from_config_error,
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
    assert set(data[0]) == {"severity", "file", "bot_id", "key", "message"}


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
    # printed as the loader wrote them; an entry without an id gets a key path instead (bots[1].id)
    assert lines[:-1] == [
        f"error: {problem.replace(': bots[1]: ', ': bots[1].')}" for problem in raised.value.problems
    ]
    assert lines[-1] == f"{len(raised.value.problems)} errors, 0 warnings"
    assert main(["check", "--config", str(path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert {(d["bot_id"], d["key"]) for d in data} >= {
        (None, "host.nmae"),
        ("a", "publish[0]"),
        (None, "bots[1].id"),
    }


@pytest.mark.parametrize("name", ["missing.toml", "."])
def test_missing_config_fails_loudly_with_the_path(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    assert main(["check", "--config", str(path)]) == 1
    assert capsys.readouterr().out.startswith(f"error: {path}: no such config file")


def test_config_error_problems_become_findings() -> None:
    error = ConfigError(
        "x",
        [
            "/c/dev.toml: bot 'grid-1': params: unknown key (see docs/configuration.md)",
            "/c/dev.toml: bots[2]: id: Field required",
            "/c/dev.toml: backend.type: Input should be 'memory' or 'nats'",
            "/c/dev.toml: invalid TOML: Expected '=' (at line 3, column 5)",
            "/c/dev.toml: include /c/nope.toml: no such config file",
            "/c: no such config file (it is a directory)",
        ],
    )
    findings = findings_from_config_error(error)
    assert [(f.file, f.bot_id, f.key) for f in findings] == [
        ("/c/dev.toml", "grid-1", "params"),
        ("/c/dev.toml", None, "bots[2].id"),
        ("/c/dev.toml", None, "backend.type"),
        ("/c/dev.toml", None, ""),
        ("/c/dev.toml", None, ""),
        ("", None, ""),
    ]
    for finding, problem in zip(
        findings[:1] + findings[2:], error.problems[:1] + error.problems[2:], strict=True
    ):
        assert str(finding) == f"error: {problem}"  # printed exactly as the loader wrote it


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
