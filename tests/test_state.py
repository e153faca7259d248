"""Bot state on the memory backend: the contract, atomic files, crash restarts, reloads, host restarts."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from citarion_host.bot import Bot
from citarion_host.errors import ConfigError, StateError
from citarion_host.reload import ConfigReloader
from citarion_host.state import Snapshot, decode_snapshot, encode_snapshot, read_snapshot, state_spec
from citarion_host.statestore import DirStore, StateKeeper, write_atomically
from tests.bus.conftest import eventually
from tests.host_bots import Recorder
from tests.state_bots import PydanticTally, Tally, TallyMigrated, TallyRenamed, Ticks

from .state_helpers import FAST_RESTARTS, handled, orders, start, tally, ticks, write

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    Recorder.seen.clear()
    Recorder.instances.clear()
    Tally.calls = 0
    Ticks.resume = None
    yield


def backend_section(request: pytest.FixtureRequest, backend: str) -> str:
    """``[backend]`` for ``backend``; NATS gets a fresh server from the fixture (never the shared one)."""
    if backend == "memory":
        return '[backend]\ntype = "memory"\n'
    server = request.getfixturevalue("nats_server")
    return f'[backend]\ntype = "nats"\n[backend.nats]\nservers = ["{server.url}"]\nstream = "state-test"\n'


def order_ids() -> list[str]:
    return [event.payload["id"] for event in Recorder.seen.get("orders", [])]


# -- the contract ---------------------------------------------------------------------------------


class _Ctx:
    bot_id = "b"


def roundtrip(bot_type: type[Bot], bot: Bot) -> Bot:
    """Snapshot ``bot``, decode it for ``bot_type`` and restore it into a fresh instance."""
    _, data = encode_snapshot(
        "b", state_spec(type(bot)), bot.snapshot(), handled=1, seq=None, stream=None, event_id=None
    )
    fresh = bot_type(_Ctx(), bot_type.Params())  # type: ignore[arg-type]
    fresh.restore(decode_snapshot(read_snapshot(data, "test"), state_spec(bot_type), bot_type))
    return fresh


def test_declared_fields_round_trip_through_a_snapshot() -> None:
    bot = Tally(_Ctx(), Tally.Params())  # type: ignore[arg-type]
    bot.count, bot.total, bot.checksum, bot.next_order = 3, 10, 12345, 7
    fresh = roundtrip(Tally, bot)
    assert isinstance(fresh, Tally) and fresh.figures() == bot.figures()


def test_a_pydantic_state_and_a_bounded_window_keep_their_shape() -> None:
    bot = PydanticTally(_Ctx(), PydanticTally.Params())  # type: ignore[arg-type]
    bot.count = 4
    bot.window.extend([1, 2, 3, 4])
    fresh = roundtrip(PydanticTally, bot)
    assert fresh.count == 4  # type: ignore[attr-defined]
    assert list(fresh.window) == [2, 3, 4] and fresh.window.maxlen == 3  # type: ignore[attr-defined]


class Counting(Bot):
    """Counters and a defaultdict, declared as the plain dicts JSON holds."""

    class State(msgspec.Struct):
        counts: dict[str, int] = {}
        totals: dict[str, float] = {}

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self.counts: Counter[str] = Counter()
        self.totals: defaultdict[str, float] = defaultdict(float)


def test_a_counter_and_a_defaultdict_keep_their_type() -> None:
    bot = Counting(_Ctx(), Counting.Params())  # type: ignore[arg-type]
    bot.counts["fills"] += 2
    bot.totals["BTCUSDT"] += 1.5
    fresh = roundtrip(Counting, bot)
    assert isinstance(fresh, Counting)
    assert isinstance(fresh.counts, Counter) and fresh.counts == {"fills": 2}
    assert fresh.counts["missing"] == 0
    assert isinstance(fresh.totals, defaultdict) and fresh.totals["ETHUSDT"] == 0.0
    assert fresh.totals["BTCUSDT"] == 1.5


def test_a_state_that_does_not_fit_is_refused_naming_the_bot_and_the_field() -> None:
    snapshot, _ = encode_snapshot(
        "band", state_spec(Tally), {"count": "many"}, handled=1, seq=None, stream=None, event_id=None
    )
    with pytest.raises(StateError, match=r"bot 'band': stored state refused, field 'count': Expected `int`"):
        decode_snapshot(snapshot, state_spec(Tally), Tally)
    old, _ = encode_snapshot(
        "band",
        state_spec(Tally),
        Tally(_Ctx(), Tally.Params()).snapshot(),
        handled=1,
        seq=None,
        stream=None,
        event_id=None,  # type: ignore[arg-type]
    )
    with pytest.raises(StateError, match=r"field 'events': missing.*reset_state = true"):
        decode_snapshot(old, state_spec(TallyRenamed), TallyRenamed)
    assert decode_snapshot(old, state_spec(TallyMigrated), TallyMigrated).events == 0
    with pytest.raises(StateError, match=r"field 'type': the stored state belongs to bot type 'test-tally'"):
        decode_snapshot(old, state_spec(PydanticTally), PydanticTally)


def test_a_value_that_is_no_plain_data_is_named() -> None:
    class Opaque(Bot):
        class State(msgspec.Struct):
            thing: int = 0

    bot = Opaque(_Ctx(), None)  # type: ignore[arg-type]
    bot.thing = object()  # type: ignore[attr-defined]
    with pytest.raises(StateError, match=r"bot 'b': its state cannot be encoded \(a object"):
        encode_snapshot(
            "b", state_spec(Opaque), bot.snapshot(), handled=0, seq=None, stream=None, event_id=None
        )
    missing = Opaque(_Ctx(), None)  # type: ignore[arg-type]
    with pytest.raises(StateError, match="declares state field 'thing' but the bot has no attribute"):
        missing.snapshot()


# -- atomic files -----------------------------------------------------------------------------------


def test_a_failure_between_write_and_rename_leaves_the_previous_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bot.json"
    write_atomically(path, b"first")

    def crash(*_: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        write_atomically(path, b"second" * 1000)
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["bot.json"], "the temporary file is removed"


_KILLED_WRITER = """
import os, sys, time
from pathlib import Path
from citarion_host.statestore import write_atomically
real = os.replace
def slow(*args):
    print("written", flush=True)
    time.sleep(60)  # killed here: the new snapshot is written and fsync'd, but not yet renamed
    real(*args)
os.replace = slow
write_atomically(Path(sys.argv[1]), b'{"new": true}' * 100_000)
"""


async def test_a_host_killed_during_a_snapshot_write_leaves_the_previous_one_readable(tmp_path: Path) -> None:
    store = DirStore(tmp_path)
    await store.save("tally", b'{"old": true}')
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path / "tally.json")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "written"
    writer.send_signal(signal.SIGKILL)
    writer.communicate(timeout=10)
    assert await store.load("tally") == b'{"old": true}'
    assert await store.keys() == ["tally"], "the temporary file left behind is no snapshot"
    assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


# -- crash restarts ---------------------------------------------------------------------------------


async def crash_run(
    tmp_path: Path, crash_every: int, backend: str = ""
) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    path = write(
        tmp_path / f"crash-{crash_every}.toml",
        FAST_RESTARTS,
        backend,
        # max_share = 1: a snapshot every 30 events whatever it costs, so a crash replays fewer than
        # 100 events and its retry is never the next injected crash
        f'[state]\nevery_events = 30\nmax_share = 1.0\nbucket = "crash-{crash_every}"\n',
        ticks(1000),
        tally(publish_every=5, crash_every=crash_every),
        orders(),
    )
    host = await start(path)
    try:
        await handled(host, "tally", 1000)
        await host.bus.settle()
    finally:
        await host.stop()
    final = host.final_stats["tally"]
    return final["bot"], order_ids(), final


@pytest.mark.parametrize("backend", ["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def test_a_bot_crashing_every_100th_event_ends_with_the_figures_of_a_run_without_crashes(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """Deterministic mode (the default); on NATS each run has a state bucket of its own (the second
    run's bots read only the events published after they subscribed)."""
    clean, clean_orders, _ = await crash_run(tmp_path, 0, backend_section(request, backend))
    Recorder.seen.clear()
    crashed, crashed_orders, final = await crash_run(tmp_path, 100, backend_section(request, backend))
    # every 5th failure within crash_window_s (10 s: all of them) is a restart, the others rollbacks
    assert final["errors"] >= 9 and final["restarts"] >= 1 and final["rollbacks"] >= 7, final
    assert final["restarts"] + final["rollbacks"] == final["errors"], final
    assert final["checkpoints"]["replayed"] > 0 and final["checkpoints"]["suppressed"] > 0, final[
        "checkpoints"
    ]
    assert crashed == clean
    assert clean["count"] == 1000 and clean["gaps"] == clean["repeats"] == 0
    assert crashed_orders == clean_orders == [f"t-{k}" for k in range(1, 1000 // 5 + 1)]


def policy(max_restarts: int, crash_window_s: float) -> str:
    """``[host]`` with the default ``crash_threshold`` (5) and fast backoffs."""
    return (
        f"[host]\nmax_restarts = {max_restarts}\ncrash_window_s = {crash_window_s}\n"
        "restart_backoff_s = 0.001\nrestart_backoff_max_s = 0.002\nprogress_interval_s = 0\nsummary = false\n"
    )


async def test_a_stateful_bot_failing_now_and_then_is_rolled_back_and_never_runs_out_of_restarts(
    tmp_path: Path,
) -> None:
    """20 failures, far more than max_restarts = 5, spread so that no 5 fall within crash_window_s: each
    is a rollback to the last snapshot, none a restart, and the run ends running with the figures of
    a run without failures."""
    state = "[state]\nevery_events = 10\nmax_share = 1.0\n"
    figures = []
    for crash_every in (0, 25):
        Tally.calls = 0
        path = write(
            tmp_path / f"every-{crash_every}.toml",
            policy(5, 0.05),
            state,
            ticks(500, pace_s=0.002),
            tally(crash_every=crash_every),
        )
        host = await start(path)
        try:
            await handled(host, "tally", 500)
            assert host.runners["tally"].state == "running"
        finally:
            await host.stop()
        figures.append(host.final_stats["tally"])
    clean, failing = figures
    assert failing["errors"] == failing["rollbacks"] >= 19 and failing["restarts"] == 0, failing
    assert failing["bot"] == clean["bot"] and clean["errors"] == 0


async def test_a_stateful_bot_failing_on_everything_is_restarted_then_marked_failed(tmp_path: Path) -> None:
    """crash_threshold failures within crash_window_s restart it (with backoff, counted), and after
    max_restarts it is failed, as any bot."""
    path = write(tmp_path / "always.toml", policy(2, 10.0), ticks(50), tally(crash_every=1))
    host = await start(path)
    try:
        runner = host.runners["tally"]
        await eventually(lambda: runner.state == "failed", timeout=10, what="tally to be marked failed")
        assert runner.restarts == 2 and runner.errors >= 5
    finally:
        await host.stop()


# -- reloads ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def test_a_params_change_keeps_the_state_and_an_incompatible_one_is_refused_naming_the_field(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest, backend: str
) -> None:
    caplog.set_level(logging.INFO)
    base = [FAST_RESTARTS, backend_section(request, backend), ticks(600, pause_at=300), orders()]
    path = write(tmp_path / "host.toml", *base, tally(publish_every=5, prefix="band", label="one"))
    import asyncio

    Ticks.resume = asyncio.Event()
    host = await start(path)
    reloader = ConfigReloader(host)
    try:
        await handled(host, "tally", 300)
        await host.bus.settle()
        write(path, *base, tally(publish_every=5, prefix="band", label="two"))
        assert (await reloader.reload_once()).status == "applied"
        assert host.runners["tally"].bot.count == 300  # type: ignore[union-attr]

        write(path, *base, tally("TallyRenamed", publish_every=5, prefix="band"))
        result = await reloader.reload_once()
        assert result.status == "rejected"
        assert any("bot 'tally': stored state refused, field 'events'" in e for e in result.errors), (
            result.errors
        )

        write(path, *base, tally("TallyMigrated", publish_every=5, prefix="band"))
        assert (await reloader.reload_once()).status == "applied"
        assert host.runners["tally"].bot.events == 300  # type: ignore[union-attr]
        Ticks.resume.set()
        await handled(host, "tally", 600)
        await host.bus.settle()
    finally:
        await host.stop()
    figures = host.final_stats["tally"]["bot"]
    assert figures["count"] == 600 and figures["gaps"] == figures["repeats"] == 0
    ids = order_ids()
    assert ids == [f"band-{k}" for k in range(1, 121)], "numbered on across the reloads: no duplicate id"
    assert "bot state migrated" in caplog.text


async def test_reset_state_starts_the_bot_fresh(tmp_path: Path) -> None:
    base = [FAST_RESTARTS, ticks(200, pause_at=100), orders()]
    path = write(tmp_path / "host.toml", *base, tally())
    import asyncio

    Ticks.resume = asyncio.Event()
    host = await start(path)
    reloader = ConfigReloader(host)
    try:
        await handled(host, "tally", 100)
        await host.bus.settle()
        write(path, *base, tally(extra="reset_state = true"))
        assert (await reloader.reload_once()).status == "applied"
        assert host.runners["tally"].bot.count == 0  # type: ignore[union-attr]
        Ticks.resume.set()
        await eventually_count(host, 100)
    finally:
        await host.stop()


async def eventually_count(host: Any, count: int) -> None:
    from tests.bus.conftest import eventually

    await eventually(lambda: host.runners["tally"].bot.count >= count, what=f"count {count}")


# -- host restarts from a directory -----------------------------------------------------------------


async def test_a_restarted_host_resumes_from_its_state_dir_and_refuses_a_state_it_cannot_take(
    tmp_path: Path,
) -> None:
    state = f'[state]\ndir = "{tmp_path / "state"}"\n'
    path = write(tmp_path / "host.toml", FAST_RESTARTS, state, ticks(250), tally())
    host = await start(path)
    try:
        await handled(host, "tally", 250)
    finally:
        await host.stop()
    stored = json.loads((tmp_path / "state" / "tally.json").read_text())
    assert stored["handled"] == 250 and stored["state"]["count"] == 250
    assert json.loads((tmp_path / "state" / "ticks.json").read_text())["state"] == {"next": 250}

    write(path, FAST_RESTARTS, state, ticks(400), tally())  # the feed goes on from 250
    host = await start(path)
    try:
        await handled(host, "tally", 400)
    finally:
        await host.stop()
    figures = host.final_stats["tally"]["bot"]
    assert figures["count"] == 400 and figures["gaps"] == figures["repeats"] == 0
    assert figures["total"] == sum(range(400))

    write(path, FAST_RESTARTS, state, ticks(400), tally("TallyRenamed"))
    with pytest.raises(ConfigError) as refused:
        await start(path)
    assert "bot 'tally': stored state refused, field 'events'" in str(refused.value.problems)
    write(path, FAST_RESTARTS, state, ticks(400), tally("TallyRenamed", extra="reset_state = true"))
    host = await start(path)
    try:
        assert host.runners["tally"].bot.events == 0  # type: ignore[union-attr]
    finally:
        await host.stop()


async def test_a_backend_switch_carries_the_state_over(tmp_path: Path) -> None:
    base = [FAST_RESTARTS, ticks(200, pause_at=100), tally()]
    path = write(tmp_path / "host.toml", "[backend]\nmax_pending = 5000\n", *base)
    import asyncio

    Ticks.resume = asyncio.Event()
    host = await start(path)
    reloader = ConfigReloader(host)
    try:
        await handled(host, "tally", 100)
        write(path, "[backend]\nmax_pending = 6000\n", *base)
        result = await reloader.reload_once()
        assert result.status == "applied" and result.diff is not None and result.diff.backend_changed
        assert host.runners["tally"].bot.count == 100  # type: ignore[union-attr]
        assert host.runners["ticks"].bot.next == 100  # type: ignore[union-attr]
        Ticks.resume.set()
        await handled(host, "tally", 200)
    finally:
        await host.stop()
    figures = host.final_stats["tally"]["bot"]
    assert figures["count"] == 200 and figures["gaps"] == figures["repeats"] == 0


def test_state_can_be_switched_off(tmp_path: Path) -> None:
    import asyncio

    path = write(tmp_path / "host.toml", FAST_RESTARTS, "[state]\nenabled = false\n", ticks(10), tally())

    async def run() -> None:
        host = await start(path)
        try:
            assert host.runners["tally"].checkpoints is None
        finally:
            await host.stop()

    asyncio.run(run())
    time.sleep(0)


async def test_the_harness_restarts_a_bot_through_a_snapshot() -> None:
    from citarion_host.testing import BotHarness

    harness = BotHarness(Tally, {"publish_every": 2}, publish=["analytics.>"], code="ORA")
    await harness.start()
    for n in range(5):
        await harness.feed("analytics.number.emitted", {"n": n})
    restored = await harness.restarted({"publish_every": 2, "label": "new"})
    assert restored.bot.figures() == harness.bot.figures()  # type: ignore[attr-defined]
    await restored.feed("analytics.number.emitted", {"n": 5})
    assert restored.payloads("analytics.tally")[0]["id"] == "t-3"
    with pytest.raises(StateError, match="declares no State"):
        await BotHarness(Recorder).restarted()


def test_state_show_and_reset_read_the_config_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from citarion_host.cli import main

    state = f'[state]\ndir = "{tmp_path / "state"}"\n'
    path = write(tmp_path / "host.toml", FAST_RESTARTS, state, ticks(50), tally())

    async def run() -> None:
        host = await start(path)
        try:
            await handled(host, "tally", 50)
        finally:
            await host.stop()

    asyncio.run(run())
    assert main(["state", "show", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"2 stored state(s) in dir {tmp_path / 'state'}" in out
    assert "tally: test-tally v1, 50 events, after event" in out and "ticks: test-ticks v1" in out
    assert main(["state", "show", "--config", str(path), "--bot", "tally"]) == 0
    assert '"count": 50' in capsys.readouterr().out
    ticks_file = tmp_path / "state" / "ticks.json"
    whole = ticks_file.read_bytes()
    ticks_file.write_bytes(whole[:40])  # cut short: one unreadable state no longer hides the others
    assert main(["state", "show", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "tally: test-tally v1, 50 events, after event" in out
    assert "ticks: UNREADABLE: bot 'ticks': the snapshot in dir" in out and "(state reset --bot ticks" in out
    assert main(["state", "show", "--config", str(path), "--bot", "ticks"]) == 1
    assert "not a readable state snapshot" in capsys.readouterr().err
    ticks_file.write_bytes(whole)
    assert main(["state", "reset", "--config", str(path), "--bot", "tally"]) == 0
    assert "reset tally" in capsys.readouterr().out
    assert main(["state", "show", "--config", str(path), "--bot", "tally"]) == 1
    assert "error: no stored state for bot 'tally' in dir" in capsys.readouterr().err
    memory_only = write(tmp_path / "memory.toml", ticks(1))
    assert main(["state", "show", "--config", str(memory_only)]) == 1
    assert "keeps bot state in the host process only" in capsys.readouterr().err
    assert main(["state"]) == 2


async def test_a_store_that_keeps_failing_is_said_once_per_bot_and_again_when_it_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that is down stays down for a while, and every stateful bot snapshots about once a
    second: the failure was logged at every snapshot (one error line a second per bot, for as long
    as it lasted). Now each is counted, said when it starts for a bot, and said when it works again."""
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    keeper = StateKeeper(DirStore(blocker))
    snapshot = Snapshot(bot="tally", type="tally", version=1, handled=1)
    with caplog.at_level(logging.WARNING, logger="citarion_host.state"):
        for n in range(5):
            keeper.put(snapshot, b'{"n": %d}' % n)
            await keeper.flush()
        blocker.unlink()  # the operator mends it
        keeper.put(snapshot, b'{"n": 5}')
        await keeper.flush()
        await keeper.close()
    assert keeper.write_failures == 5 and keeper.written == 1
    said = [(r.levelname, r.getMessage(), getattr(r, "bot", None)) for r in caplog.records]
    assert said == [
        ("ERROR", "could not store a state snapshot", "tally"),
        ("WARNING", "state snapshot stored again", "tally"),
    ]
    assert (blocker / "tally.json").read_bytes() == b'{"n": 5}'


_SECOND_WRITER = """
import asyncio, sys
from citarion_host.errors import StateError
from citarion_host.statestore import DirStore
async def main():
    store = DirStore(sys.argv[1])
    try:
        await store.save("tally", b'{"second": true}')
    except StateError as exc:
        print(exc)
    await store.save("other", b'{"second": true}')  # a bot the first process does not write
    print("other written")
asyncio.run(main())
"""


async def test_two_processes_never_write_one_bots_state_in_one_directory(tmp_path: Path) -> None:
    """Two hosts on one ``[state] dir`` with the same bot (a service and a manual start) overwrote
    each other's snapshots without a word. The first writer of a bot holds its lock: the second's
    writes are refused naming the first's pid, other bots are written, and once the first lets go
    (its host stopped) the bot can be written by another process."""
    store = DirStore(tmp_path)
    await store.save("tally", b'{"first": true}')

    def second() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", _SECOND_WRITER, str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    refused, written = second()
    assert refused == (
        f"bot 'tally': {tmp_path / 'tally.json'} is written by another process (pid {os.getpid()}):"
        " two hosts run this bot on one [state] dir; this one does not write its state"
    )
    assert written == "other written"
    assert await store.load("tally") == b'{"first": true}'
    store.release()
    assert second() == ["other written"]  # its "tally" write went through
    assert await store.load("tally") == b'{"second": true}'
    assert await store.keys() == ["other", "tally"], "lock files are no snapshots"
