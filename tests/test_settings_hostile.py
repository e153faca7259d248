"""Hostile and broken config input: one ConfigError line each, never a traceback nor a hang.

Files (non-UTF-8, cut short, deeply nested, too large, unreadable), include graphs (duplicates,
cycles through symlinks, depth) and ``CITARION_*`` variables (typos, the plain list form, bad JSON).
See docs/configuration.md (Limits, include, Environment overrides).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from citarion_host.errors import ConfigError
from citarion_host.settings import load_config
from citarion_host.settings_env import env_names
from citarion_host.settings_files import MAX_DEPTH, MAX_FILE_BYTES, MAX_INCLUDE_DEPTH

BOT = '[[bots]]\nid = "{id}"\ncode = "GRD"\nplugin = "grid"\n'


@pytest.fixture(autouse=True)
def _no_citarion_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("CITARION_"):
            monkeypatch.delenv(name)


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ=environ if environ is not None else {})
    found = raised.value.problems
    assert all("\n" not in p and "Traceback" not in p for p in found), found
    return found


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# --- files -----------------------------------------------------------------------------------------


def test_non_utf8_names_the_byte_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", b'[host]\nname = "caf\xe9"\n')
    assert problems(path) == [f"{path}: not valid UTF-8: byte 0xe9 at line 2, column 12"]


def test_a_character_cut_at_the_end_says_the_file_may_be_half_written(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[host]\nname = "€'.encode()[:-1])
    [problem] = problems(path)
    assert problem.startswith(f"{path}: not valid UTF-8: byte 0xe2 at line 2, column 9")
    assert "a character cut short at the end: is the file still being written?" in problem


def test_a_bom_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", b'\xef\xbb\xbf[host]\nname = "bom"\n')
    assert load_config(path, environ={}).config.host.name == "bom"


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 5000 + "]" * 5000,  # beyond Python's recursion limit inside tomllib
        "a = " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),  # parses, but deeper than the limit
        "a = " + "{b = " * 600 + "1" + "}" * 600,
        "[" + ".".join(["t"] * (MAX_DEPTH + 2)) + "]\n",
        "[bots.params]\nx = " + "[" * 40 + "]" * 40,
    ],
)
def test_deep_nesting_is_refused(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "c.toml", text + "\n")
    assert problems(path) == [
        f"{path}: nested too deeply (more than {MAX_DEPTH} levels of tables and arrays)"
    ]


def test_nesting_within_the_limit_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", BOT.format(id="g") + "[bots.params]\nx = " + "[" * 20 + "]" * 20 + "\n")
    assert load_config(path, environ={}).config.bots[0].params["x"] == [
        [[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]
    ]


def test_a_file_too_large(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", b"#" * (MAX_FILE_BYTES + 1))
    assert problems(path) == [f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB: not a config file?"]


def test_an_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", "")
    (tmp_path / "loop.toml").symlink_to(tmp_path / "loop.toml")
    assert problems(tmp_path / "loop.toml") == [f"{tmp_path / 'loop.toml'}: no such config file"]
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root reads anything: use a directory in the file's place
            path.chmod(0o644)
            path.unlink()
            (tmp_path / "c.toml").mkdir()
            assert problems(tmp_path / "c.toml") == [f"{path}: no such config file (it is a directory)"]
        else:
            assert problems(path) == [f"{path}: cannot read: Permission denied"]
    finally:
        if path.is_file():
            path.chmod(0o644)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a = 1" + "0" * 5000, "invalid TOML"),  # beyond Python's integer digit limit
        ('x = "\\ud800"', "invalid TOML"),  # a lone surrogate escape
        ("a = 1979-02-30", "invalid TOML"),
        ("[host]\ndrain_timeout_s = inf\n", "host.drain_timeout_s: Input should be a finite number"),
        (
            "[host]\nreload_max_removed_share = nan\n",
            "host.reload_max_removed_share: Input should be a finite",
        ),
        ("[host]\n" + "k" * 5000 + " = 1\n", "..."),  # a huge key is shortened in the message
    ],
)
def test_odd_values_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "c.toml", text)
    [problem] = problems(path)
    assert message in problem and len(problem) < 1000, problem


def test_nul_in_an_include_name(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", 'include = "a\\u0000b.toml"\n')
    assert problems(path) == [f"{path}: include: 'a\\x00b.toml': a file name cannot contain a NUL character"]


# --- includes --------------------------------------------------------------------------------------


def test_a_diamond_chain_is_refused_at_the_first_duplicate_in_linear_time(tmp_path: Path) -> None:
    """Each file includes the next one twice: read naively that is 2^depth reads of the last file."""
    depth = MAX_INCLUDE_DEPTH - 1
    for level in range(depth):
        write(tmp_path / f"f{level}.toml", f'include = ["f{level + 1}.toml", "f{level + 1}.toml"]\n')
    write(tmp_path / f"f{depth}.toml", BOT.format(id="leaf"))
    [problem] = problems(tmp_path / "f0.toml")
    last, before = tmp_path / f"f{depth}.toml", tmp_path / f"f{depth - 1}.toml"
    assert problem == f"{before}: include {last}: already included by {before} (include each file once)"


def test_the_same_file_through_a_symlink_is_one_file(tmp_path: Path) -> None:
    write(tmp_path / "common.toml", BOT.format(id="c"))
    (tmp_path / "alias.toml").symlink_to(tmp_path / "common.toml")
    main = write(tmp_path / "main.toml", 'include = ["common.toml", "alias.toml"]\n')
    assert problems(main) == [
        f"{main}: include {tmp_path / 'alias.toml'}: already included by {main} (include each file once)"
    ]


def test_a_cycle_through_a_symlinked_directory_ends(tmp_path: Path) -> None:
    (tmp_path / "sub").symlink_to(tmp_path)  # sub/sub/sub/... is the same directory
    main = write(tmp_path / "main.toml", 'include = "sub/main.toml"\n')
    [problem] = problems(main)
    assert problem.startswith(f"{main}: include cycle: {main} -> {tmp_path / 'sub' / 'main.toml'}")


def test_includes_nested_too_deep(tmp_path: Path) -> None:
    for level in range(MAX_INCLUDE_DEPTH + 1):
        write(tmp_path / f"f{level}.toml", f'include = "f{level + 1}.toml"\n')
    [problem] = problems(tmp_path / "f0.toml")
    assert problem.endswith(f"includes nested more than {MAX_INCLUDE_DEPTH} deep")


def test_the_main_file_included_again_is_a_cycle(tmp_path: Path) -> None:
    main = write(tmp_path / "main.toml", 'include = "a.toml"\n')
    write(tmp_path / "a.toml", 'include = "main.toml"\n')
    assert problems(main) == [
        f"{tmp_path / 'a.toml'}: include cycle: {main} -> {tmp_path / 'a.toml'} -> {main}"
    ]


# --- environment -----------------------------------------------------------------------------------


def empty(tmp_path: Path) -> Path:
    return write(tmp_path / "c.toml", "")


def test_a_misspelt_variable_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    assert problems(empty(tmp_path), {"CITARION_BAKEND__TYPE": "nats"}) == [
        "environment: CITARION_BAKEND__TYPE: no such config key (did you mean CITARION_BACKEND__TYPE?)"
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("CITARION_HOST__RELAOD", "no such config key (did you mean CITARION_HOST__RELOAD?)"),
        ("CITARION_HOSTS", "no such config key (did you mean CITARION_HOST?)"),
        (
            "citarion_backend__nats__server",
            "no such config key (did you mean CITARION_BACKEND__NATS__SERVERS?)",
        ),
        ("CITARION_BOTS__0__ID", "single bots cannot be overridden: CITARION_BOTS replaces the whole list"),
        ("CITARION_HOST__NAME__FIRST", "host.name has no keys below it"),
    ],
)
def test_unknown_names(tmp_path: Path, name: str, message: str) -> None:
    [problem] = problems(empty(tmp_path), {name: "x"})
    assert problem.startswith(f"environment: {name}: {message}"), problem


def test_other_citarion_variables_are_not_config(tmp_path: Path) -> None:
    environ = {"CITARION_NATS_SERVER": "/usr/bin/nats-server", "CITARION_FUZZ_EXAMPLES": "5000"}
    assert load_config(empty(tmp_path), environ=environ).config.backend.type == "memory"


@pytest.mark.parametrize(
    ("value", "servers"),
    [
        ("nats://a:4222", ["nats://a:4222"]),
        ("nats://a:4222,nats://b:4222", ["nats://a:4222", "nats://b:4222"]),
        (" nats://a:4222 , nats://b:4222 ", ["nats://a:4222", "nats://b:4222"]),
        ('["nats://a:4222"]', ["nats://a:4222"]),
    ],
)
def test_the_plain_list_form_is_accepted(tmp_path: Path, value: str, servers: list[str]) -> None:
    config = load_config(empty(tmp_path), environ={"CITARION_BACKEND__NATS__SERVERS": value}).config
    assert config.backend.nats.servers == servers


def test_a_float_list_in_plain_form(tmp_path: Path) -> None:
    config = load_config(empty(tmp_path), environ={"CITARION_BACKEND__NATS__NAK_BACKOFF_S": "0.1, 1"}).config
    assert config.backend.nats.nak_backoff_s == [0.1, 1.0]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CITARION_BACKEND__NATS__SERVERS", "[nats://a:4222", "not valid JSON (Expecting value"),
        ("CITARION_BACKEND__NATS__TLS", "verify=false", "not valid JSON"),
        ("CITARION_BACKEND__NATS__TLS", "[1]", "expected a JSON object, got list"),
        ("CITARION_BOTS", "grid", "not valid JSON"),
        ("CITARION_BOTS", "[" * 100_000, "JSON nested too deeply"),
    ],
)
def test_bad_json_names_the_variable(tmp_path: Path, name: str, value: str, message: str) -> None:
    [problem] = problems(empty(tmp_path), {name: value})
    assert problem.startswith(f"environment: {name}: {message}"), problem


def test_a_bad_value_names_key_and_variable(tmp_path: Path) -> None:
    path = empty(tmp_path)
    environ = {"CITARION_HOST__RELOAD": "maybe", "CITARION_BACKEND__NATS__REPLICAS": "9"}
    assert sorted(problems(path, environ)) == [
        f"{path}: backend.nats.replicas: Input should be less than or equal to 5"
        " (from CITARION_BACKEND__NATS__REPLICAS)",
        f"{path}: host.reload: Input should be a valid boolean, unable to interpret input"
        " (from CITARION_HOST__RELOAD)",
    ]


@pytest.mark.parametrize("value", ["nats://a:4222,", ",nats://a:4222", "a,,b"])
def test_an_empty_item_in_a_plain_list(tmp_path: Path, value: str) -> None:
    assert problems(empty(tmp_path), {"CITARION_BACKEND__NATS__SERVERS": value}) == [
        "environment: CITARION_BACKEND__NATS__SERVERS: an empty item in a comma-separated list"
    ]


def test_the_environment_bots_list_replaces_the_files(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", BOT.format(id="file-bot"))
    environ = {"CITARION_BOTS": '[{"id": "env-bot", "code": "GRD", "plugin": "grid"}, {"id": "x"}]'}
    found = problems(path, environ)
    assert found == [
        f"{path}: bot 'x': code: Field required (from CITARION_BOTS)",
        f"{path}: bot 'x': plugin: Field required (from CITARION_BOTS)",
    ]


def test_a_table_as_json_merges_key_by_key(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[backend.nats.tls]\nca_file = "ca.pem"\n')
    config = load_config(path, environ={"CITARION_BACKEND__NATS__TLS": '{"verify": false}'}).config
    assert config.backend.nats.tls is not None
    assert (config.backend.nats.tls.ca_file, config.backend.nats.tls.verify) == ("ca.pem", False)


def test_every_environment_name_is_documented() -> None:
    """The names the suggestions draw from are the documented keys (tests/test_docs.py checks those)."""
    names = env_names(load_config.__globals__["HostConfig"])
    assert "CITARION_BACKEND__NATS__SERVERS" in names and "CITARION_HOST__RELOAD_MAX_REMOVED_SHARE" in names
