"""The host on the memory backend: wiring, refusal, supervision, clean stop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.errors import APIError

from citarion_host.bus.base import EventBus
from citarion_host.errors import ConfigError
from citarion_host.events import Event
from citarion_host.host import Host
from citarion_host.natsserver import NatsServer
from citarion_host.plugins import Plugins
from citarion_host.settings import load_config
from tests.bus.conftest import Collector, eventually
from tests.host_bots import Bars, Crasher, Exiter, Held, Looper, Numbers, Recorder, Trespasser

FAST_RESTARTS = """
[host]
restart_backoff_s = 0.01
restart_backoff_max_s = 0.05
max_restarts = 3
crash_threshold = 2
crash_window_s = 10
"""


@pytest.fixture(autouse=True)
def _reset_test_bots() -> Iterator[None]:
    Recorder.seen.clear()
    Recorder.instances.clear()
    Numbers.gate = None
    Numbers.sent = 0
    Crasher.starts = 0
    Exiter.starts = 0
    Looper.looping = True
    Trespasser.refusals.clear()
    Bars.sent = 0
    Held.seen.clear()
    Held.gate = None
    yield


def bot(
    bot_id: str, plugin: str, code: str = "ORA", publish: str = "[]", subscribe: str = "[]", **params: Any
) -> str:
    lines = [
        "[[bots]]",
        f'id = "{bot_id}"',
        f'code = "{code}"',
        f'plugin = "tests.host_bots:{plugin}"',
        f"publish = {publish}",
        f"subscribe = {subscribe}",
    ]
    if params:
        lines.append("[bots.params]")
        lines += [
            f"{key} = {value!r}".replace("'", '"').replace("True", "true").replace("False", "false")
            for key, value in params.items()
        ]
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, *parts: str, name: str = "host.toml") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(parts))
    return path


def feed_and_reader(tmp_path: Path, feed: tuple[str, str], reader: tuple[str, str], **params: Any) -> Path:
    """A config of two bots: ``feed`` (id, plugin) publishing ``analytics.number.>`` with ``params``,
    ``reader`` subscribed to it."""
    return write(
        tmp_path,
        bot(*feed, publish='["analytics.number.>"]', **params),
        bot(*reader, subscribe='["analytics.number.>"]'),
    )


async def start_host(path: Path) -> Host:
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    return host


async def test_bots_are_wired_and_numbers_arrive_in_order(tmp_path: Path) -> None:
    host = await start_host(
        feed_and_reader(tmp_path, ("numbers", "Numbers"), ("recorder", "Recorder"), count=200)
    )
    try:
        await eventually(lambda: len(Recorder.seen.get("recorder", [])) == 200, what="200 numbers")
        assert [e.payload["n"] for e in Recorder.seen["recorder"]] == list(range(200))
        assert all(e.source == "ORA" for e in Recorder.seen["recorder"])
        assert host.runners["numbers"].published == {"number": 200}
    finally:
        await host.stop()
    assert host.bus.closed and host.runners == {}


@pytest.mark.parametrize("deterministic", [True, False])
async def test_a_handler_stuck_on_one_event_is_reported_and_the_host_not_ready_until_it_returns(
    tmp_path: Path, deterministic: bool
) -> None:
    """A handler that does not return raises nothing: before the handler watch, a deterministic run
    stood still at 0 events/s without a word. Now one error line, ``system.bot.stuck``, and the host
    is not ready, naming the bot, until the handler returns (``system.bot.unstuck``)."""
    Held.gate = asyncio.Event()
    path = write(
        tmp_path,
        f"[host]\nhandler_stuck_s = 0.3\n[backend]\ndeterministic = {str(deterministic).lower()}\n",
        bot("bars", "Bars", publish='["analytics.number.>"]', count=3),
        bot("held", "Held", subscribe='["analytics.number.>"]'),
        bot("watch", "Recorder", subscribe='["system.bot.>"]'),
    )
    host = await start_host(path)
    try:
        await eventually(lambda: not host.health().ready, timeout=5, what="the host not ready")
        [reason] = host.health().reasons
        waits = "deterministic mode: every bot waits for it" if deterministic else "its next events wait"
        assert reason.startswith("bot 'held' has been handling one event for ") and waits in reason
        Held.gate.set()
        await eventually(lambda: host.health().ready, timeout=5, what="ready again")
        await eventually(lambda: Held.seen == [0, 1, 2], what="the other bars")

        def reports() -> list[tuple[str, str]]:
            return [
                (e.topic, e.payload.state)
                for e in Recorder.seen.get("watch", [])
                if e.payload.bot_id == "held" and e.topic.endswith("stuck")
            ]

        await eventually(lambda: len(reports()) == 2, what="both reports")
        assert reports() == [("system.bot.stuck", "stuck"), ("system.bot.unstuck", "running")]
    finally:
        Held.gate.set()  # a failed check must not leave the handler holding the stop up
        await host.stop()


@pytest.mark.parametrize("deterministic", [True, False])
async def test_a_host_with_a_stuck_handler_still_stops_within_its_timeouts(
    tmp_path: Path, deterministic: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The drain of a stuck bot's backlog never ends: it is bounded by ``drain_timeout_s`` (reported as
    an overrun, the backlog discarded), and the bus, which cannot settle, is waited for once, not once
    per bot stopped after it (``drain_timeout_s`` each): the stop used to run into
    ``shutdown_timeout_s``."""
    Held.gate = asyncio.Event()
    path = write(
        tmp_path,
        "[host]\ndrain_timeout_s = 0.3\nstop_timeout_s = 0.3\nhandler_stuck_s = 0.2\n"
        f"[backend]\ndeterministic = {str(deterministic).lower()}\n",
        bot("bars", "Bars", publish='["analytics.number.>"]', count=3),
        bot("held", "Held", subscribe='["analytics.number.>"]'),
        *(bot(f"reader{n}", "Recorder", subscribe='["analytics.number.>"]') for n in range(3)),
    )
    host = await start_host(path)
    try:
        await eventually(lambda: not host.health().ready, timeout=5, what="the handler reported stuck")
        async with asyncio.timeout(10):  # 0.3 s to settle, 0.3 s for the drain, then the rest
            await host.stop()
        assert host.bus.closed and Held.seen == [0]
        settles = [r for r in caplog.records if r.getMessage().startswith("stop: the bus did not settle")]
        assert len(settles) == 1, [getattr(r, "after", "") for r in settles]
        overruns = [
            str(getattr(r, "reason", ""))
            for r in caplog.records
            if r.getMessage() == "bot stop overran its timeout"
        ]
        assert overruns == [
            "the drain of its backlog did not return within 0.3s ([host] drain_timeout_s): a handler that does"
            " not return; its backlog is discarded"
        ]
    finally:
        Held.gate.set()
        await host.stop()


async def test_a_replayed_feed_keeps_two_bars_queued_ahead_of_the_platform(tmp_path: Path) -> None:
    """``ctx.settle(lag=True)`` before each bar (deterministic mode, the host's default): while the
    platform is still on bar 0, the feed hands over bars 1 and 2 and then waits, no further (on
    JetStream the next bars are stored meanwhile: ``supervisor.LAG_SETTLES``); the order is the same."""
    Held.gate = asyncio.Event()
    host = await start_host(feed_and_reader(tmp_path, ("bars", "Bars"), ("held", "Held"), count=10))
    try:
        await eventually(lambda: Held.seen == [0] and Bars.sent == 3, what="bars 1 and 2 queued behind bar 0")
        await asyncio.sleep(0.1)  # room for the feed to run further ahead, if it would
        assert Bars.sent == 3
        Held.gate.set()
        await eventually(lambda: Held.seen == list(range(10)), what="every bar, in order")
    finally:
        Held.gate.set()  # a failed check must not leave the handler holding the stop up
        await host.stop()


async def test_durable_bots_run_on_a_bus_without_the_capability(tmp_path: Path) -> None:
    """The memory bus refuses ``durable``; the host leaves it out there (live events only)."""
    path = write(
        tmp_path,
        bot("numbers", "Numbers", publish='["analytics.number.>"]', count=20),
        bot("recorder", "Recorder", subscribe='["analytics.number.>"]') + "durable = true\n",
    )
    host = await start_host(path)
    try:
        await eventually(lambda: len(Recorder.seen.get("recorder", [])) == 20, what="20 numbers")
        assert all(sub.durable is None for sub in host.bus.subscriptions)
    finally:
        await host.stop()


async def test_publish_outside_declared_patterns_is_refused_and_counted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        FAST_RESTARTS.replace("crash_threshold = 2", "crash_threshold = 100"),
        bot("numbers", "Numbers", publish='["analytics.number.>"]', count=3),
        bot("tres", "Trespasser", publish='["analytics.>"]', subscribe='["analytics.number.>"]'),
    )
    orders = Collector()
    host = Host(load_config(path), plugins=Plugins())
    await host.bus.start()
    await host.bus.subscribe("trading.>", orders)
    await host.start()
    try:
        await eventually(lambda: len(Trespasser.refusals) == 3, what="3 refusals")
        assert "bot 'tres' may not publish 'trading.order.submitted'" in Trespasser.refusals[0]
        assert "nothing was sent" in Trespasser.refusals[0]
        assert host.runners["tres"].refused == 3
        assert host.runners["tres"].errors == 3, "reported as handler errors"
        assert orders.events == []
    finally:
        await host.stop()


async def failing_beside_others(tmp_path: Path, failing: str) -> tuple[Host, Collector]:
    """A started host with fast restarts: 40 numbers to ``failing`` (a bot's config lines) and to a
    recorder; ``system.bot.*`` collected from before the start."""
    path = write(
        tmp_path,
        FAST_RESTARTS,
        bot("numbers", "Numbers", publish='["analytics.number.>"]', count=40, pace_s=0.005),
        failing,
        bot("recorder", "Recorder", subscribe='["analytics.number.>"]'),
    )
    lifecycle = Collector()
    host = Host(load_config(path), plugins=Plugins())
    await host.bus.start()
    await host.bus.subscribe("system.bot.>", lifecycle)
    await host.start()
    return host, lifecycle


async def test_crashing_bot_restarts_with_backoff_then_fails_others_unaffected(tmp_path: Path) -> None:
    crasher = bot("crasher", "Crasher", subscribe='["analytics.number.>"]')
    host, lifecycle = await failing_beside_others(tmp_path, crasher)
    try:
        await eventually(lambda: host.runners["crasher"].state == "failed", timeout=10, what="crasher failed")
        await eventually(lambda: len(Recorder.seen["recorder"]) == 40, timeout=10, what="all 40 numbers")
        assert [e.payload["n"] for e in Recorder.seen["recorder"]] == list(range(40))
        crasher_events = [e for e in lifecycle.events if e.payload.bot_id == "crasher"]
        topics = [e.topic for e in crasher_events]
        assert topics.count("system.bot.restarting") == 3
        assert topics[-1] == "system.bot.failed"
        assert "gave up after 3 restarts" in (crasher_events[-1].payload.reason or "")
        assert Crasher.starts == 4  # first start + 3 restarts
        delays = [e.payload.reason for e in crasher_events if e.topic == "system.bot.restarting"]
        assert ["in 0.01s" in delays[0], "in 0.02s" in delays[1], "in 0.04s" in delays[2]] == [True] * 3
        errors = [e for e in lifecycle.events if e.topic == "system.bot.error"]
        assert errors and errors[0].metadata["topic"] == "analytics.number.emitted"
        assert host.runners["recorder"].state == "running"
    finally:
        await host.stop()


async def test_a_bot_failing_to_start_is_retried(tmp_path: Path) -> None:
    path = write(
        tmp_path, FAST_RESTARTS, bot("crasher", "Crasher", subscribe='["analytics.>"]', fail_on_start=True)
    )
    host = await start_host(path)
    try:
        await eventually(lambda: host.runners["crasher"].state == "failed", timeout=10, what="gave up")
        assert Crasher.starts == 4
    finally:
        await host.stop()


@pytest.mark.parametrize("where", ["handle", "start", "task"])
async def test_a_bot_calling_sys_exit_fails_alone_and_the_host_runs_on(tmp_path: Path, where: str) -> None:
    """``sys.exit()`` in a bot's code (its own, or a library's) went through asyncio, which lets
    ``SystemExit`` end the event loop: one bot ended the host (exit status 3, every other bot with
    it). Now it is that bot's failure (``BotExit``), restarted with backoff like any other."""
    exiter = bot("exiter", "Exiter", subscribe='["analytics.number.>"]', where=where)
    host, lifecycle = await failing_beside_others(tmp_path, exiter)
    try:
        await eventually(lambda: host.runners["exiter"].state == "failed", timeout=10, what="exiter failed")
        await eventually(lambda: len(Recorder.seen["recorder"]) == 40, timeout=10, what="all 40 numbers")
        assert Exiter.starts == 4  # first start + 3 restarts
        reasons = [e.payload.reason or "" for e in lifecycle.events if e.payload.bot_id == "exiter"]
        assert any("BotExit: the bot called sys.exit(3)" in reason for reason in reasons), reasons
        assert host.runners["recorder"].state == "running" and host.runners["numbers"].state == "running"
    finally:
        await host.stop()
    assert host.bus.closed


async def test_a_bot_calling_sys_exit_in_stop_is_reported_and_the_host_stops(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        bot("watch", "Recorder", subscribe='["system.bot.>"]'),  # stopped last (reverse start order)
        bot("exiter", "Exiter", subscribe='["analytics.number.>"]', where="stop"),
    )
    host = await start_host(path)
    await host.stop()
    assert host.bus.closed and host.final_stats["exiter"]["errors"] == 1
    reports = [e for e in Recorder.seen["watch"] if e.topic == "system.bot.error"]
    assert [(e.payload.bot_id, e.payload.reason) for e in reports] == [
        ("exiter", "stop() failed: BotExit: the bot called sys.exit(3)")
    ]


async def test_a_loop_between_bots_makes_the_host_not_ready_and_it_still_stops(tmp_path: Path) -> None:
    """A bot that receives what it publishes (``check`` warns) starts a cascade without end: the
    next bar never comes. Before, the host held the event loop for good (only ``kill -9`` ended it)
    and said nothing. Now it is not ready while the cascade runs, saying why, and ready again once
    it ends."""
    path = write(
        tmp_path,
        "[host]\ndrain_timeout_s = 0.5\n",
        bot("bars", "Bars", publish='["analytics.number.>"]', count=3),
        bot("looper", "Looper", publish='["analytics.loop.>"]', subscribe='["analytics.>"]'),
    )
    host = await start_host(path)
    try:
        await eventually(lambda: not host.health().ready, timeout=30, what="not ready")
        [reason] = host.health().reasons
        assert reason.startswith(
            "deterministic mode: one event's cascade started by analytics.number.emitted from ORA has run "
        ) and reason.endswith(
            " events (a loop between bots?); the next event from outside the bots waits for its end"
        )
        assert host.bus.stats()["long_cascades"] == 1
        Looper.looping = False  # the loop ends: the next bars come, the host is ready again
        await eventually(lambda: host.health().ready, timeout=10, what="ready again")
        await eventually(lambda: Bars.sent == 3, timeout=10, what="the other bars")
    finally:
        async with asyncio.timeout(20):
            await host.stop()
    assert host.bus.closed


async def test_invalid_config_refuses_to_start(tmp_path: Path) -> None:
    path = write(tmp_path, bot("x", "Recorder", code="GRD", subscribe='["system.>"]'))
    host = Host(load_config(path), plugins=Plugins())
    with pytest.raises(ConfigError) as caught:
        await host.start()
    assert any("bot 'x'" in problem and "subscribe[0]" in problem for problem in caught.value.problems)
    assert not host.bus.closed and not host.runners


async def test_stop_on_ends_the_run_when_every_feed_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[host]\nstop_on = "analytics.feed.completed"\n',
        bot("a", "Numbers", publish='["analytics.>"]', count=5, announce_done="analytics.feed.completed"),
        bot("b", "Numbers", publish='["analytics.>"]', count=50, announce_done="analytics.feed.completed"),
        bot("recorder", "Recorder", subscribe='["analytics.number.>"]'),
    )
    host = await start_host(path)
    try:
        async with asyncio.timeout(10):
            await host.finished.wait()
        assert len(Recorder.seen["recorder"]) == 55
    finally:
        await host.stop()


def test_bus_is_the_only_way_out(tmp_path: Path) -> None:
    """Bots get a context, never the bus (that is how the wiring can be enforced)."""
    from citarion_host.supervisor import HostBotContext

    assert not any(isinstance(v, EventBus) for v in vars(HostBotContext).values())
    assert Event  # imported for type use in helpers


async def test_a_host_on_a_full_store_is_not_ready_and_stops_without_waiting_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The NATS server's JetStream storage full (another stream took it): the host's events are not
    stored. The host says why it is not ready, and its stop does not wait for the store once per bot
    (each bot's "stopped" report waited ``publish_timeout_s``: the demo's 11 bots took 110 s)."""
    limit = tmp_path / "limit.conf"
    limit.write_text("jetstream { max_file_store: 256KB }\n")
    with NatsServer(config_file=limit) as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="junk", subjects=["junk.>"])
            with pytest.raises(APIError):
                for _ in range(100):  # 100 x 8 KB: past 256 KB
                    await js.publish("junk.fill", b"x" * 8192)
        finally:
            await nc.close()
        config = write(
            tmp_path,
            "[host]\ndrain_timeout_s = 2.0",
            f'[backend]\ntype = "nats"\n[backend.nats]\nservers = ["{server.url}"]\npublish_timeout_s = 5.0',
            *(bot(f"reader{n}", "Recorder", subscribe='["market.>"]') for n in range(3)),
        )
        host = await start_host(config)
        try:
            await eventually(lambda: not host.health().ready, timeout=10, what="the host not ready")
            assert (
                "JetStream refuses to store this host's events: insufficient resources (err_code 10023)"
                in host.health().reasons
            )
        finally:
            with caplog.at_level("WARNING", logger="citarion_host.host"):
                await host.stop()
    said = [r.getMessage() for r in caplog.records if r.name == "citarion_host.host"]
    assert said.count("stop: the bus cannot settle; the bots stop without waiting for it") == 1
    assert not [m for m in said if "did not settle in time" in m]
