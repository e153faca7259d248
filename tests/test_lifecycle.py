"""The host's lifecycle under bad bots and lost servers: start/stop timeouts, readiness, signals.

In-process tests run the host on the memory bus (or a real nats-server from ``conftest.py``); the
signal tests run ``citarion-host run`` as a subprocess and signal it. Bounds are generous (a hang is
what they catch, not a duration); the figures measured are printed.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from citarion_host.app import run_host
from citarion_host.errors import BusError
from citarion_host.health import UNREADY_TOPIC
from citarion_host.host import Host
from citarion_host.natsserver import NatsServer
from citarion_host.plugins import Plugins
from citarion_host.settings import load_config
from citarion_host.ui.dashboard import Dashboard
from tests.bus.conftest import Collector, eventually
from tests.host_bots import Numbers, Recorder
from tests.lifecycle_bots import RELEASE, HangsAtStart

REPO = Path(__file__).resolve().parents[1]
#: What a hang is told apart by: far above any real start or stop in these tests, far below forever
#: (``CITARION_TEST_HANG_S`` shortens it to check quickly that the tests fail without the fixes).
HANG = float(os.environ.get("CITARION_TEST_HANG_S", "60"))


@pytest.fixture(autouse=True)
def _reset_test_bots() -> Iterator[None]:
    Recorder.seen.clear()
    Recorder.instances.clear()
    Numbers.gate = None
    Numbers.sent = 0
    HangsAtStart.starts = 0
    RELEASE.clear()
    yield


def bot(bot_id: str, plugin: str, publish: str = "[]", subscribe: str = "[]", **params: object) -> str:
    module = "tests.lifecycle_bots" if plugin.startswith(("Hangs", "Fails")) else "tests.host_bots"
    lines = [
        "[[bots]]",
        f'id = "{bot_id}"',
        'code = "ORA"',
        f'plugin = "{module}:{plugin}"',
        f"publish = {publish}",
        f"subscribe = {subscribe}",
    ]
    if params:
        lines.append("[bots.params]")
        lines += [
            f"{key} = {str(value).lower() if isinstance(value, bool) else repr(value)}".replace("'", '"')
            for key, value in params.items()
        ]
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, *parts: str) -> Path:
    path = tmp_path / "host.toml"
    path.write_text("\n".join(parts))
    return path


# -- start / stop timeouts ----------------------------------------------------------------------------


async def test_a_start_that_never_returns_marks_the_bot_failed_and_the_others_run(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[host]\nstart_timeout_s = 0.5\n",
        bot("numbers", "Numbers", publish='["analytics.number.>"]', count=50),
        bot("stuck", "HangsAtStart", subscribe='["analytics.number.>"]'),
        bot("recorder", "Recorder", subscribe='["analytics.number.>"]'),
    )
    host = Host(load_config(path), plugins=Plugins())
    lifecycle = Collector()
    await host.bus.subscribe("system.bot.>", lifecycle)
    began = time.monotonic()
    async with asyncio.timeout(HANG):  # on a host without the timeout, start() never returns
        await host.start()
    print(f"host started in {time.monotonic() - began:.2f}s with start_timeout_s = 0.5")
    try:
        assert host.runners["stuck"].state == "failed"
        assert HangsAtStart.starts == 1, "a start that hung is not retried: it would hang each time"
        await eventually(lambda: len(Recorder.seen.get("recorder", [])) == 50, what="the other bots' events")
        await eventually(lambda: "system.bot.failed" in lifecycle.topics, what="the failure report")
        failed = next(e for e in lifecycle.events if e.topic == "system.bot.failed")
        assert failed.payload.bot_id == "stuck"
        assert "start() did not return within 0.5s ([host] start_timeout_s)" in (failed.payload.reason or "")
        health = host.health()
        assert not health.ready and "bot 'stuck' is failed" in health.reasons
    finally:
        async with asyncio.timeout(HANG):
            await host.stop()


@pytest.mark.parametrize("how", ["wait", "stubborn"])
async def test_a_stop_that_never_returns_is_abandoned_after_stop_timeout(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``stubborn`` catches its cancellation and keeps waiting: ``asyncio.timeout`` would wait for it
    for good; the host leaves it behind and goes on stopping."""
    path = write(
        tmp_path,
        "[host]\nstop_timeout_s = 0.5\ndrain_timeout_s = 120\n",
        bot("recorder", "Recorder", subscribe='["system.bot.>"]'),  # stopped last (reverse start order)
        bot("stuck", "HangsAtStop", subscribe='["analytics.number.>"]', how=how),
    )
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    began = time.monotonic()
    try:
        async with asyncio.timeout(HANG):
            await host.stop()
    finally:
        RELEASE.set()  # the stop() left behind returns, so this test's loop can close
    print(f"host stopped in {time.monotonic() - began:.2f}s with stop_timeout_s = 0.5 ({how})")
    assert host.bus.closed and host.final_stats["stuck"]["state"] == "running"
    overran = [r for r in caplog.records if r.getMessage() == "bot stop overran its timeout"]
    assert [getattr(r, "bot", None) for r in overran] == ["stuck"]
    assert "stop() did not return within 0.5s ([host] stop_timeout_s)" in getattr(overran[0], "reason", "")
    reports = [e for e in Recorder.seen["recorder"] if e.topic == "system.bot.error"]
    assert [e.payload.bot_id for e in reports] == ["stuck"], "reported on system.bot.error too"


async def test_a_stop_that_raises_is_reported_and_counted_and_the_host_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bot's ``stop()`` that raises was logged with its traceback and nothing more: no report on
    ``system.bot.*`` (where an overrun goes), no count in the bot's errors (the summary's column)."""
    path = write(
        tmp_path,
        bot("recorder", "Recorder", subscribe='["system.bot.>"]'),  # stopped last (reverse start order)
        bot("closer", "FailsAtStop", subscribe='["analytics.number.>"]'),
    )
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    await host.stop()
    assert host.bus.closed and host.final_stats["closer"]["errors"] == 1
    failed = [r for r in caplog.records if r.getMessage() == "bot stop failed"]
    assert [getattr(r, "bot", None) for r in failed] == ["closer"] and failed[0].exc_info is not None
    reports = [e for e in Recorder.seen["recorder"] if e.topic == "system.bot.error"]
    assert [(e.payload.bot_id, e.payload.reason) for e in reports] == [
        ("closer", "stop() failed: RuntimeError: the exchange session could not be closed")
    ]


# -- readiness ------------------------------------------------------------------------------------------


async def test_health_is_the_one_readiness_the_dashboard_serves(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[host]\nmax_restarts = 0\n",
        bot("recorder", "Recorder", subscribe='["analytics.number.>"]'),
        bot("crasher", "Crasher", subscribe='["analytics.number.>"]', fail_on_start=True),
    )
    loaded = load_config(path)
    host = Host(loaded, plugins=Plugins())
    dashboard = Dashboard(host, loaded.config.ui)
    assert host.health().reasons == (
        "the host is not running",
        "bot 'recorder' is absent",
        "bot 'crasher' is absent",
    )
    await host.start()
    try:
        health = host.health()
        assert not health.ready and health.reasons == ("bot 'crasher' is failed",)
        assert health.bots == {"recorder": "running", "crasher": "failed"} and health.connected
        assert dashboard.readiness() == (False, health.to_dict()), "/readyz serves the host's own answer"
        await host.stop_bot("crasher")  # an operator's stop does not count against the host
        assert host.health().ready and dashboard.readiness()[0]
    finally:
        await host.stop()
    assert host.health().reasons[:2] == ("the host is not running", "bus 'memory' not connected (closed)")


def nats_config(server: NatsServer, stream: str, *parts: str) -> str:
    return "\n".join(
        [
            "[host]\nprogress_interval_s = 0\nsummary = false\ndrain_timeout_s = 5\nstop_timeout_s = 2\n",
            f'[backend]\ntype = "nats"\n[backend.nats]\nservers = ["{server.url}"]\nstream = "{stream}"',
            "reconnect_wait_s = 0.1\nreconnect_wait_max_s = 0.2\nmax_reconnect_attempts = 2\n",
            *parts,
        ]
    )


async def test_a_bus_closed_for_good_makes_the_host_lost_and_run_raise(
    nats_server: NatsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "host.toml"
    path.write_text(
        nats_config(nats_server, "lost-inproc", bot("recorder", "Recorder", subscribe='["market.>"]'))
    )
    loaded = load_config(path)
    stop = asyncio.Event()
    hosts: list[Host] = []
    unready = Collector()

    async def watch() -> None:  # the run's host, as soon as it exists
        from citarion_host import app

        original = app.Host

        class Watched(original):  # type: ignore[misc,valid-type]
            async def start(self) -> None:
                hosts.append(self)
                await self.bus.start()
                await self.bus.subscribe("system.host.>", unready, name="test:unready")
                await super().start()

        app.Host = Watched  # type: ignore[misc]
        try:
            await eventually(lambda: bool(hosts) and hosts[0].started, timeout=30, what="the host")
        finally:
            app.Host = original  # type: ignore[misc]

    watcher = asyncio.create_task(watch())
    run = asyncio.create_task(run_host(loaded, handle_signals=False, stop=stop, out=io.StringIO()))
    await watcher
    host = hosts[0]
    assert host.health().ready
    nats_server.stop()
    with pytest.raises(BusError, match=r"bus 'nats': connection closed for good .*; the host stopped"):
        async with asyncio.timeout(HANG):  # without the health watch: idles "running" until stop is set
            await run
    stop.set()
    assert host.lost.is_set() and not host.health().ready
    assert [e.topic for e in unready.events] == [UNREADY_TOPIC], "reported once"
    assert unready.events[0].payload["reasons"][0].startswith("bus 'nats': connection closed for good")
    logged = [r for r in caplog.records if r.getMessage() == "host not ready for good: stopping"]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR


# -- the command, as a process: a lost bus, signals -----------------------------------------------------


class HostRun:
    """``citarion-host run --config <config>`` as a process; its stderr read by a thread, so waiting
    for a line is bounded even when the host hangs without writing anything."""

    def __init__(self, config: Path, *, prefix: tuple[str, ...] = ()) -> None:
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "citarion_host.cli", "run", "--config", str(config)],
            cwd=config.parent,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line)
        self._lines.put(None)

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        """End the process if it still runs, and close its pipe (the tests' ``finally``)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(HANG)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def wait_for(self, text: str) -> None:
        """Until a stderr line contains ``text``; fail if the process ends or HANG passes first."""
        deadline = time.monotonic() + HANG
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"host exited ({self.process.wait()}) before {text!r}:\n{self.text}")
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {HANG}s:\n{self.text}")

    def finish(self) -> tuple[int, str, float]:
        """Wait (at most HANG) for the exit: its status, the whole stderr, the seconds it took."""
        began = time.monotonic()
        try:
            code = self.process.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"host still running {HANG}s later:\n{self.text}") from None
        took = time.monotonic() - began
        self._reader.join(HANG)
        return code, self.text, took

    @property
    def text(self) -> str:
        while not self._lines.empty():
            line = self._lines.get()
            if line is not None:
                self.seen.append(line)
        return "".join(self.seen)


def test_run_exits_1_when_its_nats_connection_closes_for_good(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    config = tmp_path / "host.toml"
    config.write_text(
        nats_config(nats_server, "lost-run", bot("recorder", "Recorder", subscribe='["market.>"]'))
    )
    process = HostRun(config)
    try:
        process.wait_for("host started")
        nats_server.stop()
        code, stderr, took = process.finish()
    finally:
        process.kill()
    print(f"exit {code} {took:.2f}s after the server stopped")
    assert code == 1, stderr
    assert "host not ready for good: stopping" in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: bus 'nats': connection closed for good") and "the host stopped" in last
    assert "Traceback" not in stderr


def hanging_stop(tmp_path: Path, how: str, host: str = "", loop: str = "asyncio") -> Path:
    """A bot whose stop() hangs (``how``), on the event loop ``loop`` (the signal paths differ)."""
    config = tmp_path / "host.toml"
    config.write_text(
        "\n".join(
            [
                f"[host]\nprogress_interval_s = 0\nsummary = false\nevent_loop = '{loop}'\n{host}",
                bot("stuck", "HangsAtStop", subscribe='["analytics.number.>"]', how=how),
                bot("recorder", "Recorder", subscribe='["analytics.number.>"]'),
            ]
        )
    )
    return config


def test_sigterm_stops_the_host_when_a_stop_ignores_its_cancellation(tmp_path: Path) -> None:
    """The host stops cleanly past the stop() it abandoned; that stop() then holds the event loop's
    own teardown (it waits for every task), which the watchdog ends: bounded, status 1."""
    process = HostRun(hanging_stop(tmp_path, "stubborn", "stop_timeout_s = 1\nshutdown_timeout_s = 5\n"))
    try:
        process.wait_for("host started")
        process.send_signal(signal.SIGTERM)
        code, stderr, took = process.finish()
    finally:
        process.kill()
    print(f"exit {code} {took:.2f}s after SIGTERM")
    assert "bot stop overran its timeout" in stderr and "host stopped" in stderr, stderr
    assert code == 1, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: shutdown did not finish within 5s")


def test_sigterm_exits_1_after_shutdown_timeout_when_a_stop_blocks_the_loop(tmp_path: Path) -> None:
    process = HostRun(hanging_stop(tmp_path, "block", "shutdown_timeout_s = 2\n"))
    try:
        process.wait_for("host started")
        process.send_signal(signal.SIGTERM)
        code, stderr, took = process.finish()
    finally:
        process.kill()
    print(f"exit {code} {took:.2f}s after SIGTERM")
    assert code == 1, stderr
    assert stderr.strip().splitlines()[-1] == (
        "error: shutdown did not finish within 2s ([host] shutdown_timeout_s): exiting with status 1"
    )


@pytest.mark.parametrize(
    ("second", "loop"), [(signal.SIGTERM, "asyncio"), (signal.SIGINT, "asyncio"), (signal.SIGTERM, "uvloop")]
)
def test_a_second_signal_exits_at_once(tmp_path: Path, second: signal.Signals, loop: str) -> None:
    process = HostRun(hanging_stop(tmp_path, "block", loop=loop))  # shutdown_timeout_s: default, 120 s
    try:
        process.wait_for("host started")
        process.send_signal(signal.SIGTERM)
        process.wait_for("citarion_host.app: stopping")  # the shutdown began (armed)
        process.send_signal(second)
        code, stderr, took = process.finish()
    finally:
        process.kill()
    print(f"exit {code} {took:.2f}s after the second signal")
    assert code == 128 + second, stderr
    assert f"error: {second.name} again during shutdown: exiting at once" in stderr


def test_a_paused_process_is_not_a_blocked_loop(tmp_path: Path) -> None:
    """``SIGSTOP`` stops the loop watch's thread with the loop (``loopwatch.py``): a thread that wakes
    far later than it asked skips that look, so a host paused for longer than ``loop_blocked_s`` (a
    suspended VM, a debugger, ``kill -STOP``) does not say its loop was blocked. A bot blocking the
    loop after the pause is still said, once: the watch ran all along."""
    config = write(
        tmp_path,
        "[host]\nprogress_interval_s = 0\nsummary = false\nloop_blocked_s = 0.5\n",
        bot("numbers", "Numbers", publish='["analytics.number.>"]', count=100_000, pace_s=0.05),
        bot("blocker", "Blocker", subscribe='["analytics.number.>"]', sleep_s=1.5, after=60),
    )
    process = HostRun(config)
    try:
        process.wait_for("host started")
        process.send_signal(signal.SIGSTOP)
        time.sleep(2.5)
        process.send_signal(signal.SIGCONT)
        process.wait_for("event loop running again")  # the blocker, about 3 s of running after the start
        process.send_signal(signal.SIGTERM)
        code, stderr, _ = process.finish()
    finally:
        process.kill()
    assert code == 0, stderr
    blocked = [line for line in stderr.splitlines() if "event loop blocked" in line]
    assert len(blocked) == 1 and "bot=blocker" in blocked[0] and "in handle" in blocked[0], stderr


def recorder_only(tmp_path: Path) -> Path:
    """A host that runs until it is stopped: one bot waiting for market events that never come."""
    config = tmp_path / "host.toml"
    config.write_text(
        "[host]\nprogress_interval_s = 0\nsummary = false\n"
        + bot("recorder", "Recorder", subscribe='["market.>"]')
    )
    return config


def signalled(config: Path, *signums: signal.Signals, prefix: tuple[str, ...] = ()) -> tuple[int, str]:
    """Run ``config``, send ``signums`` once the host started (the next one once the shutdown began,
    or at once with ``prefix``: what a wrapper such as ``nohup`` does to the signals is the point),
    and return the exit status and stderr."""
    process = HostRun(config, prefix=prefix)
    try:
        process.wait_for("host started")
        for n, signum in enumerate(signums):
            if n and not prefix:
                process.wait_for("citarion_host.app: stopping")  # the shutdown began (armed)
            process.send_signal(signum)
        code, stderr, _ = process.finish()
    finally:
        process.kill()
    return code, stderr


def test_sighup_stops_the_host_cleanly_and_a_second_exits_at_once(tmp_path: Path) -> None:
    """A closed terminal (SIGHUP) killed the host where it stood: no stop, no last snapshots, no
    summary, status 129 from the shell. Now it stops the host as SIGTERM does (status 0); a second
    one during a stop that blocks exits at once with 129."""
    code, stderr = signalled(recorder_only(tmp_path), signal.SIGHUP)
    assert code == 0, stderr
    assert "stopping on SIGHUP (send it again to exit at once)" in stderr and "host stopped" in stderr
    code, stderr = signalled(hanging_stop(tmp_path, "block"), signal.SIGHUP, signal.SIGHUP)
    assert code == 129, stderr
    assert "error: SIGHUP again during shutdown: exiting at once (status 129)" in stderr


def test_a_host_started_under_nohup_ignores_sighup(tmp_path: Path) -> None:
    """``nohup`` asks for SIGHUP to be ignored, and the host keeps it so. SIGHUP and SIGTERM are sent
    together; the kernel delivers the lower number first, so a handled SIGHUP would be the stop's
    reason: SIGTERM is."""
    nohup = shutil.which("nohup")
    assert nohup is not None, "coreutils' nohup"
    code, stderr = signalled(recorder_only(tmp_path), signal.SIGHUP, signal.SIGTERM, prefix=(nohup,))
    assert code == 0, stderr
    assert "stopping on SIGTERM" in stderr and "SIGHUP" not in stderr


# -- plugin imports ------------------------------------------------------------------------------------


def hung_import(tmp_path: Path) -> Path:
    """A config whose only bot's module never finishes importing (``time.sleep`` at module level)."""
    (tmp_path / "hangs_at_import.py").write_text("import time\ntime.sleep(1e6)\n")
    config = tmp_path / "host.toml"
    config.write_text(
        "[host]\nplugin_import_timeout_s = 1\nprogress_interval_s = 0\n\n"
        '[[bots]]\nid = "hung"\ncode = "ORA"\nplugin = "hangs_at_import:Bot"\n'
    )
    return config


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_module_that_hangs_at_import_is_refused_in_one_line(tmp_path: Path, command: str) -> None:
    """``check`` honours the config's import timeout too (it used the 10 s default)."""
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "citarion_host.cli", command, "--config", str(hung_import(tmp_path))],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    print(f"{command}: exit {done.returncode} in {time.monotonic() - began:.2f}s")
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1, done.stdout + done.stderr
    assert "bot 'hung': plugin: plugin 'hangs_at_import:Bot': cannot import 'hangs_at_import'" in errors[0]
    assert "did not finish within 1s (plugin_import_timeout_s)" in errors[0]
    assert "Traceback" not in done.stderr
