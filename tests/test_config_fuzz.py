"""Fuzzing the config loader and ``config show``: whatever the bytes, a config or one-line errors.

Generated inputs: raw bytes (mostly not UTF-8), arbitrary text, near-valid configs built from real
fragments and then cut, spliced with bad bytes or NULs, deeply nested documents (arrays, inline
tables, dotted headers, up to thousands of levels) and an included file fuzzed the same way, plus
arbitrary ``CITARION_*`` variables. The property: ``load_config`` returns or raises ``ConfigError``
whose problems are single lines; ``citarion-host config show`` exits 0 or 1 without a traceback.

Bounded in CI; ``CITARION_FUZZ_EXAMPLES=5000`` (or more) for a longer run, whose figures print with
``-s``::

    CITARION_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/test_config_fuzz.py -s -q
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from citarion_host.cli import main
from citarion_host.errors import ConfigError
from citarion_host.settings import load_config
from citarion_host.settings_files import MAX_DEPTH

EXAMPLES = int(os.environ.get("CITARION_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # figures, not timed assertions: the slowest example is printed instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    derandomize=EXAMPLES <= 150,  # CI runs the same examples every time
)

FRAGMENTS = [
    "[host]\n",
    'name = "fuzz"\n',
    "reload = true\n",
    "drain_timeout_s = 0.5\n",
    'stop_on = "system.feed.done"\n',
    "reload_max_removed_share = 1\n",
    "[backend]\n",
    'type = "nats"\n',
    'type = "memory"\n',
    "max_pending = 10\n",
    "[backend.nats]\n",
    'servers = ["nats://app:s3cret@h:4222"]\n',
    "nak_backoff_s = [0.1, 2]\n",
    "[backend.nats.tls]\n",
    "verify = false\n",
    "[logging]\n",
    'level = "debug"\n',
    "[[bots]]\n",
    'id = "grid-1"\n',
    'code = "GRD"\n',
    'plugin = "grid"\n',
    'publish = ["trading.signal.>", "trading.order.submitted"]\n',
    'subscribe = ["market.candle.>", "risk.>"]\n',
    'queue = "q"\n',
    "durable = true\n",
    "params = { levels = 5, spacing_pct = 0.004, symbols = ['BTC', 'ETH'] }\n",
    "[bots.params]\n",
    'label = "ünïcødé ✓ €"\n',
    'include = "other.toml"\n',
    'include = ["other.toml", "other.toml"]\n',
    'include = "main.toml"\n',
    "x = 1979-05-27T07:32:00Z\n",
    "y = inf\n",
    'z = """multi\nline"""\n',
    "# comment\n",
    "\n",
]


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """Real fragments joined, then damaged the way files get damaged."""
    data = "".join(draw(st.lists(st.sampled_from(FRAGMENTS), max_size=25))).encode()
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        damage = draw(st.sampled_from(["cut", "bad bytes", "nul", "flip", "insert fragment", "drop a byte"]))
        if damage == "cut":
            data = data[:at]
        elif damage == "bad bytes":
            data = (
                data[:at]
                + draw(st.sampled_from([b"\xff", b"\xc3", b"\xe2\x82", b"\x80\x80", b"\xed\xa0\x80"]))
                + data[at:]
            )
        elif damage == "nul":
            data = data[:at] + b"\x00" + data[at:]
        elif damage == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif damage == "insert fragment":
            data = data[:at] + draw(st.sampled_from(FRAGMENTS)).encode() + data[at:]
        elif damage == "drop a byte":
            data = data[:at] + data[at + 1 :]
    return data


@st.composite
def deeply_nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.one_of(st.integers(MAX_DEPTH - 2, MAX_DEPTH + 3), st.integers(30, 5000)))
    kind = draw(st.sampled_from(["array", "inline table", "dotted header", "mixed", "in params"]))
    if kind == "array":
        body = "a = " + "[" * depth + "]" * depth
    elif kind == "inline table":
        body = "a = " + "{b = " * depth + "1" + "}" * depth
    elif kind == "dotted header":
        body = "[" + ".".join(["t"] * min(depth, 2000)) + "]"
    elif kind == "mixed":
        body = "a = " + "[{b = " * depth + "1" + "}]" * depth
    else:
        body = (
            '[[bots]]\nid = "g"\ncode = "GRD"\nplugin = "grid"\n[bots.params]\nx = '
            + "[" * depth
            + "]" * depth
        )
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]  # cut short too
    return (body + "\n").encode()


documents = st.one_of(
    st.binary(max_size=600),
    st.text(max_size=400).map(lambda text: text.encode("utf-8", errors="surrogatepass")),
    near_valid(),
    near_valid(),
    deeply_nested(),
)


@pytest.fixture(scope="module", autouse=True)
def _no_citarion_environment() -> Iterator[None]:
    """``config show`` reads the real environment: a developer's CITARION_* must not change it."""
    with pytest.MonkeyPatch.context() as patch:
        for name in os.environ:
            if name.startswith("CITARION_") and name != "CITARION_NATS_SERVER":
                patch.delenv(name)
        yield


STATS: Counter[str] = Counter()
SLOWEST: list[float] = [0.0]


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if STATS:
        print(
            f"\nconfig fuzz: {STATS['inputs']} inputs ({STATS['non-utf8']} not UTF-8, {STATS['deep']} with more"
            f" than {MAX_DEPTH} '[' or '{{'), {STATS['loaded']} loaded, {STATS['refused']} refused with"
            f" {STATS['problems']} one-line problems, {STATS['tracebacks']} tracebacks, slowest"
            f" {SLOWEST[0] * 1000:.0f} ms; environment: {STATS['env inputs']} inputs"
        )


def _classify(data: bytes) -> None:
    STATS["inputs"] += 1
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        STATS["non-utf8"] += 1
    if data.count(b"[") > MAX_DEPTH or data.count(b"{") > MAX_DEPTH or data.count(b".") > MAX_DEPTH * 2:
        STATS["deep"] += 1


def _check_loader(path: Path) -> None:
    try:
        load_config(path, environ={})
    except ConfigError as exc:
        STATS["refused"] += 1
        STATS["problems"] += len(exc.problems)
        assert exc.problems
        for problem in exc.problems:
            assert "\n" not in problem and len(problem) < 2000, problem
    else:
        STATS["loaded"] += 1


def _check_cli(path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["config", "show", "--config", str(path)])
    if "Traceback" in err.getvalue() or code not in (0, 1):
        STATS["tracebacks"] += 1
    assert code in (0, 1) and "Traceback" not in err.getvalue(), err.getvalue()
    if code == 0:
        assert "s3cret" not in out.getvalue()


@FUZZ
@given(main_file=documents, included=documents)
def test_any_bytes_load_or_fail_with_one_line_problems(main_file: bytes, included: bytes) -> None:
    _classify(main_file)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "main.toml"
        path.write_bytes(main_file)
        (Path(directory) / "other.toml").write_bytes(included)
        started = time.perf_counter()
        _check_loader(path)
        _check_cli(path)
        SLOWEST[0] = max(SLOWEST[0], time.perf_counter() - started)


env_names = st.one_of(
    st.sampled_from(
        [
            "CITARION_BACKEND__TYPE",
            "CITARION_BAKEND__TYPE",
            "CITARION_BACKEND__NATS__SERVERS",
            "CITARION_BACKEND__NATS__TLS",
            "CITARION_BACKEND__NATS__NAK_BACKOFF_S",
            "CITARION_HOST__RELOAD",
            "CITARION_HOST",
            "CITARION_BOTS",
            "CITARION_BOTS__0__ID",
            "citarion_logging__level",
        ]
    ),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=30).map(lambda s: "CITARION_" + s),
)
env_values = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["true", "[", "{", '{"verify": false}', "nats://a:4222,", "[1]", "null", "1e400"]),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
)


@FUZZ
@given(environ=st.dictionaries(env_names, env_values, max_size=4))
def test_any_environment_loads_or_fails_with_one_line_problems(environ: dict[str, str]) -> None:
    STATS["env inputs"] += 1
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "main.toml"
        path.write_text('[[bots]]\nid = "g"\ncode = "GRD"\nplugin = "grid"\n')
        try:
            load_config(path, environ=environ)
        except ConfigError as exc:
            assert all("\n" not in p and len(p) < 2000 for p in exc.problems), exc.problems
