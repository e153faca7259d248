"""Loading configs (``citarion_host.settings``) and the ``config show`` and ``init`` commands.

Every error must name the file (the included one when the mistake is there), the bot id and the key;
every problem is listed, not only the first. See ``docs/configuration.md``.
"""

from __future__ import annotations

import asyncio
import os
import tomllib
from pathlib import Path

import pytest

from citarion_host.cli import main
from citarion_host.errors import ConfigError
from citarion_host.examples import TickerFeed, TickerLogger
from citarion_host.settings import HostConfig, load_config
from citarion_host.testing import BotHarness


@pytest.fixture(autouse=True)
def _no_citarion_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CITARION_* variable in the developer's shell must not change what these tests see."""
    for name in os.environ:
        if name.startswith("CITARION_"):
            monkeypatch.delenv(name)


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return raised.value.problems


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BOT = '[[bots]]\nid = "{id}"\ncode = "GRD"\nplugin = "grid"\n'


# --- errors --------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert _problems(tmp_path / "nope.toml") == [f"{tmp_path / 'nope.toml'}: no such config file"]


def test_directory(tmp_path: Path) -> None:
    assert _problems(tmp_path) == [f"{tmp_path}: no such config file (it is a directory)"]


def test_bad_toml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.toml", '[host]\nname = "x\n')
    [problem] = _problems(path)
    assert problem.startswith(f"{path}: invalid TOML: ")
    assert "line 2" in problem


def test_bad_toml_in_an_include_names_the_include(tmp_path: Path) -> None:
    inc = _write(tmp_path / "inc.toml", "[[bots]\n")
    path = _write(tmp_path / "main.toml", 'include = "inc.toml"\n')
    [problem] = _problems(path)
    assert problem.startswith(f"{inc}: invalid TOML: ") and "line 1" in problem


def test_include_cycle(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.toml", 'include = ["b.toml"]\n')
    b = _write(tmp_path / "b.toml", 'include = ["a.toml"]\n')
    assert _problems(a) == [f"{b}: include cycle: {a} -> {b} -> {a}"]


def test_self_include_is_a_cycle(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.toml", 'include = "a.toml"\n')
    assert _problems(a) == [f"{a}: include cycle: {a} -> {a}"]


def test_missing_include(tmp_path: Path) -> None:
    path = _write(tmp_path / "main.toml", 'include = ["gone.toml"]\n')
    assert _problems(path) == [f"{path}: include {tmp_path / 'gone.toml'}: no such config file"]


def test_include_must_be_names(tmp_path: Path) -> None:
    path = _write(tmp_path / "main.toml", "include = [1]\n")
    assert _problems(path) == [f"{path}: include: must be a file name or a list of file names"]


def test_unknown_keys_everywhere_are_all_reported(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "c.toml",
        '[host]\nnmae = "x"\n[backend.nats]\nserver = []\n[[bots]]\nid = "g"\ncode = "GRD"\nplugin = "grid"\nparms = {}\n'
        "[loging]\n",
    )
    assert sorted(_problems(path)) == sorted(
        [
            f"{path}: host.nmae: unknown key (see docs/configuration.md)",
            f"{path}: backend.nats.server: unknown key (see docs/configuration.md)",
            f"{path}: bot 'g': parms: unknown key (see docs/configuration.md)",
            f"{path}: loging: unknown key (see docs/configuration.md)",
        ]
    )


def test_bad_values(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "c.toml",
        '[host]\ndrain_timeout_s = 0\nstop_on = "trading.*"\n[backend]\ntype = "kafka"\n[logging]\nlevel = "LOUD"\n',
    )
    problems = _problems(path)
    assert len(problems) == 4
    assert f"{path}: host.drain_timeout_s: Input should be greater than 0" in problems
    assert any(p.startswith(f"{path}: host.stop_on: ") and "wildcard" in p for p in problems)
    assert f"{path}: backend.type: Input should be 'memory' or 'nats'" in problems
    assert any(p.startswith(f"{path}: logging.level: ") for p in problems)


def test_bad_pattern_names_bot_and_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "c.toml", BOT.format(id="grid-1") + 'publish = ["trading.>.x"]\nsubscribe = ["a..b"]\n'
    )
    problems = _problems(path)
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}: bot 'grid-1': publish")
    assert problems[0].endswith("pattern 'trading.>.x': '>' must be the last token (found at position 1)")
    assert problems[1].startswith(f"{path}: bot 'grid-1': subscribe")
    assert "empty token" in problems[1]


@pytest.mark.parametrize("bot_id", ["b c", "-lead", "", "x" * 65, "grid/1"])
def test_bad_bot_id(tmp_path: Path, bot_id: str) -> None:
    path = _write(tmp_path / "c.toml", BOT.format(id=bot_id))
    [problem] = _problems(path)
    key = f"bot {bot_id!r}: id" if bot_id else "bots[0].id"  # an entry without an id: its index
    assert problem.startswith(f"{path}: {key}: ")
    assert "must be 1-64 letters, digits, '_' or '-', starting with a letter or digit" in problem


def test_missing_required_bot_keys(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.toml", '[[bots]]\ncode = "GRD"\n[[bots]]\nid = "x"\n')
    assert sorted(_problems(path)) == sorted(
        [
            f"{path}: bots[0].id: Field required",
            f"{path}: bots[0].plugin: Field required",
            f"{path}: bot 'x': code: Field required",
            f"{path}: bot 'x': plugin: Field required",
        ]
    )


def test_errors_in_an_included_file_name_that_file(tmp_path: Path) -> None:
    inc = _write(tmp_path / "bots.toml", BOT.format(id="inc") + "max_pending = 0\n")
    path = _write(tmp_path / "main.toml", 'include = "bots.toml"\n' + BOT.format(id="main") + "durable = 3\n")
    problems = _problems(path)
    assert len(problems) == 2
    assert problems[0].startswith(f"{inc}: bot 'inc': max_pending: ")
    assert problems[1].startswith(f"{path}: bot 'main': durable: ")


# --- environment overrides -----------------------------------------------------------------------


def test_environment_overrides_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(
        tmp_path / "c.toml", '[host]\nreload = false\nname = "from-file"\n[backend]\ntype = "memory"\n'
    )
    monkeypatch.setenv("CITARION_BACKEND__TYPE", "nats")
    monkeypatch.setenv("CITARION_HOST__RELOAD", "true")
    monkeypatch.setenv("CITARION_BACKEND__NATS__SERVERS", '["nats://a:4222", "nats://b:4222"]')
    config = load_config(path).config
    assert config.backend.type == "nats"
    assert config.host.reload is True
    assert config.backend.nats.servers == ["nats://a:4222", "nats://b:4222"]
    assert config.host.name == "from-file"  # keys not in the environment keep the file's value


def test_environment_value_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "c.toml", "")
    monkeypatch.setenv("CITARION_HOST__RELOAD", "maybe")
    [problem] = _problems(path)
    assert "host.reload: Input should be a valid boolean" in problem


def test_environment_alone_without_any_key_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITARION_LOGGING__FORMAT", "json")
    assert load_config(_write(tmp_path / "c.toml", "")).config.logging.format == "json"


def test_defaults() -> None:
    config = HostConfig()
    assert (config.backend.type, config.host.reload, config.logging.level, config.bots) == (
        "memory",
        False,
        "INFO",
        [],
    )


# --- includes ------------------------------------------------------------------------------------


def test_includes_merge(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    base = _write(
        tmp_path / "sub" / "base.toml",
        'include = "deep.toml"\n[host]\nname = "base"\nreload = true\n[backend.nats]\nstream = "s"\n'
        + BOT.format(id="base-1"),
    )
    deep = _write(tmp_path / "sub" / "deep.toml", '[logging]\nformat = "json"\n' + BOT.format(id="deep-1"))
    extra = _write(tmp_path / "extra.toml", BOT.format(id="extra-1"))
    main_file = _write(
        tmp_path / "main.toml",
        'include = ["sub/base.toml", "extra.toml"]\n[host]\nname = "main"\n[backend]\ntype = "nats"\n'
        + BOT.format(id="main-1"),
    )
    loaded = load_config(main_file)
    config = loaded.config
    assert [bot.id for bot in config.bots] == ["deep-1", "base-1", "extra-1", "main-1"]  # includes first
    assert config.host.name == "main"  # the including file wins
    assert config.host.reload is True  # tables merge key by key
    assert (config.backend.type, config.backend.nats.stream) == ("nats", "s")
    assert config.logging.format == "json"  # nested include
    assert loaded.files == (main_file.resolve(), base.resolve(), deep.resolve(), extra.resolve())
    assert loaded.file_of("deep-1") == deep.resolve() and loaded.file_of("main-1") == main_file.resolve()
    assert loaded.file_of(None) == main_file


def test_include_paths_are_relative_to_the_including_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "configs").mkdir()
    _write(tmp_path / "configs" / "bots.toml", BOT.format(id="b"))
    _write(tmp_path / "configs" / "dev.toml", 'include = "bots.toml"\n')
    monkeypatch.chdir(tmp_path)
    assert [bot.id for bot in load_config("configs/dev.toml").config.bots] == ["b"]


def test_a_file_included_twice_is_refused_naming_both_includers(tmp_path: Path) -> None:
    common = _write(tmp_path / "common.toml", BOT.format(id="c"))
    a = _write(tmp_path / "a.toml", 'include = "common.toml"\n')
    path = _write(tmp_path / "main.toml", 'include = ["a.toml", "common.toml"]\n')
    # read once, not twice: the bot would be declared twice, and a diamond of includes read 2^n times
    assert _problems(path) == [f"{path}: include {common}: already included by {a} (include each file once)"]


# --- config show ---------------------------------------------------------------------------------


def test_config_show_prints_the_effective_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path / "bots.toml", BOT.format(id="g") + "params = { levels = 3 }\n")
    path = _write(
        tmp_path / "c.toml",
        'include = "bots.toml"\n[host]\nname = "demo"\n[backend.nats]\npassword = "hunter2"\ntoken = "t0k"\n',
    )
    monkeypatch.setenv("CITARION_BACKEND__TYPE", "nats")
    assert main(["config", "show", "--config", str(path)]) == 0
    shown = tomllib.loads(capsys.readouterr().out)
    assert shown["backend"]["type"] == "nats"  # the environment override
    assert shown["host"]["name"] == "demo" and shown["host"]["drain_timeout_s"] == 10.0  # defaults filled in
    assert shown["bots"][0]["params"] == {"levels": 3}
    assert (shown["backend"]["nats"]["password"], shown["backend"]["nats"]["token"]) == ("***", "***")
    del shown["backend"]["nats"]["password"], shown["backend"]["nats"]["token"]
    assert HostConfig(**shown).backend.type == "nats"  # what it prints loads back

    assert main(["config", "show", "--config", str(path), "--show-secrets"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["backend"]["nats"]["password"] == "hunter2"


def test_config_show_reports_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "c.toml", "[host]\nnmae = 1\n")
    assert main(["config", "show", "--config", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: {path}: host.nmae: unknown key (see docs/configuration.md)\n"


def test_config_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 2
    assert "show" in capsys.readouterr().out


# --- init ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", "nats"])
def test_init_then_check_round_trip(tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "new" / "citarion.toml"
    assert main(["init", str(path), "--backend", backend]) == 0
    assert str(path) in capsys.readouterr().out
    config = load_config(path).config
    assert config.backend.type == backend
    assert [(bot.code, bot.plugin) for bot in config.bots] == [
        ("LUM", "citarion_host.examples:TickerFeed"),
        ("ORA", "citarion_host.examples:TickerLogger"),
    ]
    assert main(["check", "--config", str(path)]) == 0
    assert capsys.readouterr().out == "0 errors, 0 warnings\n"  # no error, and no warning either


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "citarion.toml", "# mine\n")
    assert main(["init", str(path)]) == 1
    assert capsys.readouterr().err == f"error: {path}: already exists (use --force to overwrite it)\n"
    assert path.read_text() == "# mine\n"
    assert main(["init", str(path), "--force"]) == 0
    assert load_config(path).config.bots


def test_init_refuses_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path), "--force"]) == 1
    assert "is a directory" in capsys.readouterr().err


def test_init_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert (tmp_path / "citarion.toml").is_file()


async def test_the_starter_bots_run() -> None:
    feed = BotHarness(
        TickerFeed, {"symbols": ["BTCUSDT", "ETHUSDT"], "seed": 1}, code="LUM", publish=["market.ticker.>"]
    )
    assert isinstance(feed.bot, TickerFeed)
    await feed.bot.tick()
    await feed.bot.tick()
    assert (
        feed.published_topics()
        == ["market.ticker.updated.paper.BTCUSDT", "market.ticker.updated.paper.ETHUSDT"] * 2
    )
    assert feed.published[0].payload.last > 0
    logger = BotHarness(TickerLogger, {"every": 2}, code="ORA")
    for event in feed.published:
        await logger.feed_event(event)
    assert logger.bot.stats() == {"events_received": 4}
    await feed.start()  # the loop publishes on its own until stopped
    await asyncio.sleep(0.05)
    await feed.stop()
    assert feed.bot.stats()["tickers_sent"] >= 6
