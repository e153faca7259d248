"""Bad input through the CLI: every case exits with its code and one clear stderr line, no traceback.

Run in-process (``main(argv)``); argparse's usage errors arrive as ``SystemExit``. Each case builds
its files in a temp dir (``{d}`` in an argument is that dir). The NATS cases at the end use real
servers: one that nobody listens on, and one that wants a password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from citarion_host.cli import main
from citarion_host.natsserver import NatsServer, free_ports

#: The demo's bots (``configs/paper-trading.toml``), for a run through the real CLI.
DEMO_TOPOLOGY = Path(__file__).resolve().parent.parent / "configs" / "paper-trading.toml"

GOOD = '[[bots]]\nid = "feed"\ncode = "LUM"\nplugin = "citarion_host.examples:TickerFeed"\npublish = ["market.ticker.>"]\n'
FILES: dict[str, bytes] = {
    "good.toml": GOOD.encode(),
    "latin1.toml": b'[host]\nname = "caf\xe9"\n',
    "cut.toml": '[host]\nname = "€'.encode()[:-1],
    "deep.toml": b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "deep-tables.toml": b"[" + b".".join([b"t"] * 40) + b"]\n",
    "unknown-key.toml": b"[host]\nnmae = 1\n",
    "bad-toml.toml": b"[[bots]\nid = \n",
    "twice.toml": b'include = ["a.toml", "common.toml"]\n',
    "a.toml": b'include = "common.toml"\n',
    "common.toml": b"",
    "cycle.toml": b'include = "cycle2.toml"\n',
    "cycle2.toml": b'include = "cycle.toml"\n',
    "bad-pattern.toml": GOOD.replace('"market.ticker.>"', '"market..x"').encode(),
    "inf.toml": b"[host]\ndrain_timeout_s = inf\n",
    "a-file": b"not a directory",
    "quiet-once.toml": (
        b'[host]\nstop_on = "market.feed.completed"\nsummary = false\nprogress_interval_s = 0\n'
        b'[logging]\nlevel = "ERROR"\n[[bots]]\nid = "lumi"\ncode = "LUM"\nplugin = "lumi-synthetic"\n'
        b'publish = ["market.>"]\nparams = { bars = 5, speed = 0.0, symbols = ["BTCUSDT"], pumps = [] }\n'
    ),
    "bad-state-dir.toml": b'[state]\ndir = "/proc/nope/state"\n[logging]\nlevel = "ERROR"\n' + GOOD.encode(),
    "bad-record.toml": b'[host]\nrecord = "/proc/nope/events.jsonl"\n[logging]\nlevel = "ERROR"\n'
    + GOOD.encode(),
}

# (argv, environment, exit code, what the stderr line says)
CASES: list[tuple[list[str], dict[str, str], int, str]] = [
    (["bench", "--events", "-5"], {}, 2, "argument --events: must be at least 1, got -5"),
    (["bench", "--events", "0"], {}, 2, "argument --events: must be at least 1, got 0"),
    (["bench", "--events", "many"], {}, 2, "argument --events: not a whole number: 'many'"),
    (["bench", "--events", "1e3"], {}, 2, "argument --events: not a whole number: '1e3'"),
    (["bench", "--fanout-events", "-1"], {}, 2, "argument --fanout-events: must be at least 1, got -1"),
    (["bench", "--case", "kafka"], {}, 2, "argument --case: invalid choice: 'kafka'"),
    (
        ["bench", "--latency-seconds", "nan"],
        {},
        2,
        "argument --latency-seconds: must be a number > 0, got nan",
    ),
    (["bench", "--bots", "-3"], {}, 2, "argument --bots: must be at least 1, got -3"),
    (["--log-level", "LOUD", "bots"], {}, 2, "argument --log-level: 'LOUD' is not one of DEBUG"),
    (["--log-format", "xml", "bots"], {}, 2, "argument --log-format: invalid choice: 'xml'"),
    (["frobnicate"], {}, 2, "argument COMMAND: invalid choice: 'frobnicate'"),
    (["check"], {}, 2, "the following arguments are required: --config"),
    (["replay", "--topic", "a..b"], {}, 2, "argument --topic: pattern 'a..b'"),
    (["replay", "--topic", "a.>.b"], {}, 2, "'>' must be the last token"),
    (["replay", "--servers", "nats://host:99999"], {}, 2, "not a server URL: 'nats://host:99999'"),
    (["replay", "--servers", "nats://u:s3cret@"], {}, 2, "not a NATS server URL: 'nats://u:***@'"),
    (["replay", "--stream", "a.b"], {}, 2, "argument --stream: 'a.b': a stream name has no"),
    (["replay", "--since", "yesterday"], {}, 2, "not a time: 'yesterday'"),
    (["init", "--backend", "kafka"], {}, 2, "argument --backend: invalid choice: 'kafka'"),
    (["init", "{d}/a-file/sub/x.toml"], {}, 1, "cannot write: Not a directory"),
    (["run", "--config", ""], {}, 2, "argument --config: not a file name (empty)"),
    (["run"], {}, 2, "run needs --config FILE"),
    (["run", "--config", "{d}/missing.toml"], {}, 1, "missing.toml: no such config file"),
    (["run", "--config", "{d}/latin1.toml"], {}, 1, "latin1.toml: not valid UTF-8: byte 0xe9 at line 2"),
    (["run", "--config", "{d}/good.toml", "--summary-json", "{d}/nope/s.json"], {}, 2, "no such directory"),
    (
        ["run", "--config", "{d}/quiet-once.toml", "--summary-json", "/dev/full"],
        {},
        1,
        "error: --summary-json /dev/full: cannot write: No space left on device",
    ),
    (
        ["run", "--config", "{d}/bad-state-dir.toml"],
        {},
        1,
        "error: [state] dir: cannot write '/proc/nope/state': No such file or directory (/proc/nope)",
    ),
    (
        ["run", "--config", "{d}/bad-record.toml"],
        {},
        1,
        "bad-record.toml: [host] record: cannot write '/proc/nope/events.jsonl': No such file or directory",
    ),
    (["config", "show", "--config", "{d}/missing.toml"], {}, 1, "no such config file"),
    (["config", "show", "--config", "{d}"], {}, 1, "no such config file (it is a directory)"),
    (
        ["config", "show", "--config", "{d}/latin1.toml"],
        {},
        1,
        "not valid UTF-8: byte 0xe9 at line 2, column 12",
    ),
    (["config", "show", "--config", "{d}/cut.toml"], {}, 1, "a character cut short at the end"),
    (["config", "show", "--config", "{d}/deep.toml"], {}, 1, "nested too deeply (more than 32 levels"),
    (["config", "show", "--config", "{d}/deep-tables.toml"], {}, 1, "nested too deeply"),
    (["config", "show", "--config", "{d}/unknown-key.toml"], {}, 1, "host.nmae: unknown key"),
    (["config", "show", "--config", "{d}/bad-toml.toml"], {}, 1, "invalid TOML"),
    (["config", "show", "--config", "{d}/twice.toml"], {}, 1, "common.toml: already included by"),
    (["config", "show", "--config", "{d}/cycle.toml"], {}, 1, "include cycle"),
    (["config", "show", "--config", "{d}/bad-pattern.toml"], {}, 1, "bot 'feed': publish[0]: pattern"),
    (["config", "show", "--config", "{d}/inf.toml"], {}, 1, "host.drain_timeout_s: Input should be a finite"),
    (
        ["config", "show", "--config", "{d}/good.toml"],
        {"CITARION_BAKEND__TYPE": "nats"},
        1,
        "CITARION_BAKEND__TYPE: no such config key (did you mean CITARION_BACKEND__TYPE?)",
    ),
    (
        ["config", "show", "--config", "{d}/good.toml"],
        {"CITARION_BACKEND__NATS__TLS": "verify=no"},
        1,
        "environment: CITARION_BACKEND__NATS__TLS: not valid JSON",
    ),
    (
        ["config", "show", "--config", "{d}/good.toml"],
        {"CITARION_HOST__RELOAD": "maybe"},
        1,
        "host.reload: Input should be a valid boolean, unable to interpret input (from CITARION_HOST__RELOAD)",
    ),
    (
        ["config", "show", "--config", "{d}/good.toml"],
        {"CITARION_BOTS__0__ID": "x"},
        1,
        "single bots cannot be overridden",
    ),
    (["replay", "--config", "{d}/latin1.toml"], {}, 1, "not valid UTF-8"),
    (["replay", "--config", "{d}/missing.toml"], {}, 1, "no such config file"),
]


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in os.environ:
        if name.startswith("CITARION_") and name != "CITARION_NATS_SERVER":
            monkeypatch.delenv(name)
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exited:  # argparse
        code = exited.code if isinstance(exited.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_there_are_at_least_thirty_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(("argv", "environ", "code", "says"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line(
    argv: list[str],
    environ: dict[str, str],
    code: int,
    says: str,
    files: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    exit_code, out, err = run_cli([arg.replace("{d}", str(files)) for arg in argv], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in out + err
    assert exit_code == code, err
    assert len(lines) == 1, lines
    assert says in lines[0], lines[0]
    assert lines[0].startswith(("error: ", "citarion-host")), lines[0]


@pytest.mark.parametrize("name", ["latin1.toml", "deep.toml", "twice.toml", "cut.toml"])
def test_check_reports_an_unloadable_file_as_one_finding(
    name: str, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["check", "--config", str(files / name)], capsys)
    assert code == 1 and "Traceback" not in out + err
    assert out.splitlines()[-1] == "1 error, 0 warnings"


# --- NATS: unreachable, unauthorised --------------------------------------------------------------


def nats_config(path: Path, server: str, timeout: float = 0.5) -> Path:
    path.write_text(
        f'[backend]\ntype = "nats"\n[backend.nats]\nservers = ["{server}"]\nconnect_timeout_s = {timeout}\n'
        "reconnect_wait_s = 0.1\n"
    )
    return path


def test_replay_against_nobody_fails_within_its_connect_budget(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_ports(1)[0]
    config = nats_config(files / "nobody.toml", f"nats://app:s3cret@127.0.0.1:{port}")
    started = time.monotonic()
    code, _, err = run_cli(["replay", "--config", str(config)], capsys)
    elapsed = time.monotonic() - started
    assert code == 1 and "Traceback" not in err and "s3cret" not in err
    [line] = err.splitlines()
    assert line.startswith(f"error: cannot connect to NATS at nats://app:***@127.0.0.1:{port}: ")
    assert "ConnectionRefusedError" in line
    print(f"replay against a closed port gave up after {elapsed:.1f}s (budget 0.5 + 2x0.1 + 1 = 1.7s)")


def test_run_against_nobody_says_why_in_one_line_and_nothing_misleading(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The host never connected: no "disconnected" warning, no "closed for good" error and no failed
    report of either before the one line that says why (they said the opposite of what happened)."""
    port = free_ports(1)[0]
    config = nats_config(files / "nobody.toml", f"nats://127.0.0.1:{port}")
    code, _, err = run_cli(["run", "--config", str(config)], capsys)
    assert code == 1 and "Traceback" not in err
    lines = err.splitlines()
    assert lines[-1].startswith(
        f"error: cannot connect to NATS at nats://127.0.0.1:{port}: ConnectionRefused"
    )
    assert [line for line in lines[:-1] if " warning " in line or " error " in line] == []


@pytest.fixture
def auth_server() -> Iterator[NatsServer]:
    with NatsServer(extra_args=["--user", "app", "--pass", "right"]) as server:
        yield server


@pytest.mark.nats
def test_replay_with_a_wrong_password_names_the_cause(
    auth_server: NatsServer, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"nats://app:wrong-s3cret@127.0.0.1:{auth_server.port}"
    code, _, err = run_cli(["replay", "--servers", url], capsys)
    assert code == 1 and "Traceback" not in err and "wrong-s3cret" not in err
    assert err.splitlines() == [
        f"error: cannot connect to NATS at nats://app:***@127.0.0.1:{auth_server.port}: authorization"
        " violation: the server refused the credentials (user/password, token, creds_file or nkeys_seed)"
    ]


@pytest.mark.nats
def test_run_with_a_wrong_password_fails_with_the_server_masked(
    auth_server: NatsServer, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = nats_config(files / "auth.toml", f"nats://app:wrong-s3cret@127.0.0.1:{auth_server.port}")
    code, _, err = run_cli(["run", "--config", str(config)], capsys)
    assert code == 1 and "Traceback" not in err and "wrong-s3cret" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == [lines[0]] and f"nats://app:***@127.0.0.1:{auth_server.port}" in lines[0]


@pytest.mark.nats
def test_run_with_a_wrong_password_names_the_cause(
    auth_server: NatsServer, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = nats_config(files / "auth.toml", f"nats://app:wrong@127.0.0.1:{auth_server.port}")
    code, _, err = run_cli(["run", "--config", str(config)], capsys)
    assert code == 1 and "authorization violation" in err


# --- the record, cut short by the kernel ----------------------------------------------------------

LIMIT = 100_000  # bytes: the record's first 64 KB chunk fits, the second is cut in the middle of a line


#: Run in a child before it becomes the CLI (``exec``): its files may not grow past LIMIT (a write
#: past it fails with EFBIG, as a full disk fails with ENOSPC), and SIGXFSZ, which would kill it
#: instead, is ignored. Both outlive the ``exec``; no ``preexec_fn`` in a process with threads.
LIMITED = (
    "import os, resource, signal, sys\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def test_a_record_cut_short_keeps_whole_lines_and_the_run_its_summary(tmp_path: Path) -> None:
    """The real CLI in a process whose files cannot grow past 100 KB: the kernel writes part of a
    chunk, then refuses. The record keeps only whole lines (the cut one is cut off, so the file still
    reads as JSON lines), the run goes to its end and prints its summary, one error line says when
    the record stopped and the last line how many events it holds; exit 1."""
    record = tmp_path / "events.jsonl"
    config = tmp_path / "run.toml"
    config.write_text(
        f"include = [{str(DEMO_TOPOLOGY)!r}]\n"
        f'[host]\nrecord = "{record}"\nreload = false\nprogress_interval_s = 0\n'
        '[logging]\nlevel = "ERROR"\n'
    )
    cli = Path(sys.executable).parent / "citarion-host"
    done = subprocess.run(
        [sys.executable, "-c", LIMITED, str(LIMIT), str(cli), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "total" in done.stdout and "9,350 events in" in done.stdout  # the summary, whole
    errors = [line for line in done.stderr.splitlines() if " error " in line and "citarion.bot." not in line]
    assert len(errors) == 1 and "the record cannot be written: recording stopped" in errors[0], errors
    assert "File too large" in errors[0]
    lines = record.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a whole line
    kept = [json.loads(line) for line in lines[:-1]]
    assert 0 < record.stat().st_size <= LIMIT and len(kept) > 150
    last = done.stderr.splitlines()[-1]
    assert last.startswith("error: ") and "[host] record: the record" in last
    assert f"it holds the run's first {len(kept):,} events, {9_350 - len(kept):,} are missing" in last


@pytest.mark.nats
def test_run_whose_stream_the_server_refuses_says_why_in_one_line(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The start fails after connecting (a stream of 3 replicas on a single server): closing the
    connection it opened is the bus's own doing, so no "disconnected" warning, "closed for good"
    error or failed report before the one line that says why (they said the server dropped us)."""
    with NatsServer() as server:
        config = nats_config(files / "replicas.toml", server.url)
        config.write_text(config.read_text() + "replicas = 3\n")
        code, _, err = run_cli(["run", "--config", str(config)], capsys)
    assert code == 1 and "Traceback" not in err
    lines = err.splitlines()
    assert lines[-1].startswith("error: cannot create JetStream stream 'citarion-events': ")
    assert "replicas > 1 not supported in non-clustered mode" in lines[-1]
    assert [line for line in lines[:-1] if " warning " in line or " error " in line] == []
