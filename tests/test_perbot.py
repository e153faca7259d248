"""Per-bot identities on the wire (``[backend.nats] isolation = "per-bot"``) against a real nats-server.

The server runs the configuration ``nats-config`` generates from a *granted* topology; the host runs a
topology in which one bot, ``rogue``, declares more than it was granted (what a bot reaching past the
host's own check amounts to: the host lets the publish through, only the server can refuse it). The
server refuses it (nothing delivered), the refusal is reported on ``system.bus.permission`` and counted,
and the other bots go on: a publisher, a stored subscriber (named ephemeral consumer) and a durable one,
each over its own connection. Seeds come from the seed directory, one from the environment, and appear
neither in the logs nor in ``config show``.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from citarion_host.app import run_host
from citarion_host.bus.nats import BotView, NatsBus
from citarion_host.bus.nats.lanes import BotLink, bot_credentials, permission_violation, seed_env_name
from citarion_host.cli import main as cli_main
from citarion_host.errors import BusError, ConfigError
from citarion_host.events import Event, catalog
from citarion_host.host import Host
from citarion_host.natsconf import DeployOptions, write_deployment
from citarion_host.natsserver import NatsServer
from citarion_host.plugins import Plugins
from citarion_host.settings import load_config
from tests.bus.conftest import Collector, eventually
from tests.host_bots import Numbers, Recorder

pytestmark = pytest.mark.nats

COUNT = 40


def bots(rogue_publish: str) -> str:
    """The topology; ``rogue_publish``: what the rogue bot declares (granted: ``analytics.other.>``)."""
    return f"""
[[bots]]
id = "numbers"
code = "ORA"
plugin = "tests.host_bots:Numbers"
publish = ["analytics.number.>"]
[bots.params]
count = {COUNT}

[[bots]]
id = "recorder"
code = "ORA"
plugin = "tests.host_bots:Recorder"
subscribe = ["analytics.number.>"]

[[bots]]
id = "keeper"
code = "ORA"
plugin = "tests.host_bots:Recorder"
subscribe = ["analytics.number.>"]
durable = true

[[bots]]
id = "rogue"
code = "ORA"
plugin = "tests.host_bots:Numbers"
publish = {rogue_publish}
[bots.params]
topic = "analytics.rogue.emitted"
count = 3

[[bots]]
id = "watcher"
code = "ORA"
plugin = "tests.host_bots:Recorder"
subscribe = ["analytics.rogue.>"]
"""


def backend(url: str, out: Path, isolation: str = "per-bot") -> str:
    return f"""
[host]
progress_interval_s = 0
summary = false

[backend]
type = "nats"
stall_timeout_s = 60.0
[backend.nats]
servers = ["{url}"]
stream = "perbot"
storage = "memory"
isolation = "{isolation}"
nkeys_seed = "{out / "secrets" / "host.nk"}"
bot_seeds_dir = "{out / "secrets" / "bots"}"
# Long: a refused publish must be reported at once, not after these (the deterministic mode would
# wait for it meanwhile).
publish_timeout_s = 60.0
publish_ack_timeout_s = 0.5

"""


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[NatsServer, Path]]:
    """A nats-server from the config generated for the granted topology (rogue: analytics.other.>)."""
    granted = tmp_path / "granted.toml"
    granted.write_text(backend("nats://127.0.0.1:4222", tmp_path) + bots('["analytics.other.>"]'))
    out = tmp_path / "deploy"
    write_deployment(load_config(granted), out, DeployOptions(store_dir=str(out / "store"), check=False))
    with NatsServer.from_config(out / "nats-server.conf") as server:
        yield server, out


@pytest.fixture(autouse=True)
def _reset_bots() -> Iterator[None]:
    Recorder.seen.clear()
    Recorder.instances.clear()
    Numbers.gate = None
    yield


def seeds(out: Path) -> list[str]:
    return [path.read_text().strip() for path in (out / "secrets").rglob("*.nk")]


async def test_the_server_refuses_what_a_bot_was_not_granted_and_the_others_go_on(
    deployment: tuple[NatsServer, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, out = deployment
    # One bot's seed from the environment instead of its file.
    recorder_seed = out / "secrets" / "bots" / "recorder.nk"
    recorder_seed_text = recorder_seed.read_text().strip()
    monkeypatch.setenv(seed_env_name("recorder"), recorder_seed_text)
    recorder_seed.unlink()
    config = tmp_path / "host.toml"
    config.write_text(backend(server.url, out) + bots('["analytics.>"]'))  # rogue declares more
    caplog.set_level(logging.DEBUG)

    host = Host(load_config(config), plugins=Plugins())
    reports, unstored = Collector(), Collector()
    await host.bus.start()
    await host.bus.subscribe("system.bus.permission", reports)
    await host.bus.subscribe("system.bus.unstored", unstored)
    await host.start()
    try:
        # Each refused event reported as not stored right away (no resends until publish_timeout_s).
        await eventually(lambda: sum(e.payload["count"] for e in unstored.events) == 3, 30, "3 unstored")
        await eventually(lambda: len(Recorder.seen.get("recorder", [])) == COUNT, 30, "recorder's numbers")
        await eventually(lambda: len(Recorder.seen.get("keeper", [])) == COUNT, 30, "keeper's numbers")
        await eventually(lambda: len(reports.events) >= 1, 30, "the server's refusal reported")
        bus = host.bus
        assert isinstance(bus, NatsBus)
        # A bot reaching through to its own connection: the server refuses that too.
        rogue_link = bus._lanes["rogue"].link
        await rogue_link.nc.publish("analytics.number.forged", b"{}")
        await rogue_link.sync(5)
        await host.bus.settle()
        stats = bus.stats()["nats"]
    finally:
        await host.stop()

    assert [e.payload["n"] for e in Recorder.seen["recorder"]] == list(range(COUNT))
    assert [e.payload["n"] for e in Recorder.seen["keeper"]] == list(range(COUNT))
    assert Recorder.seen["watcher"] == []  # nothing the server refused was delivered
    refused = {(e.payload.bot_id, e.payload.operation, e.payload.subject) for e in reports.events}
    assert refused == {
        ("rogue", "publish", "analytics.rogue.emitted"),
        ("rogue", "publish", "analytics.number.forged"),
    }
    assert all(e.priority == "critical" for e in reports.events)
    assert all("refused publishing" in e.payload["reason"] for e in unstored.events)
    assert stats["isolation"] == "per-bot"
    assert stats["permission_violations"] == 4  # three events (none resent) and the forgery
    assert stats["bots"]["rogue"]["permission_violations"] == stats["permission_violations"]
    assert {b: s["permission_violations"] for b, s in stats["bots"].items() if b != "rogue"} == {
        "numbers": 0,
        "recorder": 0,
        "keeper": 0,
        "watcher": 0,
    }
    assert stats["bots"]["numbers"]["published"] == COUNT
    print(f"violations counted: {stats['permission_violations']}, reported: {len(reports.events)}")
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "refused a bot's operation" in logged
    secrets = [*seeds(out), recorder_seed_text]
    assert all(secret.startswith("SU") for secret in secrets)  # NKey user seeds, all of them
    assert not [secret for secret in secrets if secret in logged]


def _watcher_wider_than_granted(server: NatsServer, out: Path) -> str:
    """Core NATS; the watcher subscribes to more than it was granted (``analytics.rogue.>``); the rogue
    publishes nothing (this is about the watcher)."""
    text = backend(server.url, out) + "jetstream = false\n" + bots('["analytics.other.>"]')
    text = text.replace('subscribe = ["analytics.rogue.>"]', 'subscribe = ["analytics.>"]')
    return text.replace("count = 3\n", "count = 0\n")


async def test_core_nats_a_subscription_outside_the_grant_is_refused_by_the_server(
    deployment: tuple[NatsServer, Path], tmp_path: Path
) -> None:
    """Core NATS (nothing stored): the bot's own connection subscribes to its patterns itself, so a
    pattern wider than its grant is refused by the server. The refusal arrives before the server's
    confirmation of the subscription, so only that bot fails, at once (no restarts: a permission
    refusal does not heal): reported on ``system.bot.failed`` with the server's refusal as the reason,
    and counted; no subscription that would never receive anything is left behind for the
    deterministic mode to wait on. The host starts and the other bots run; it is not ready (a failed
    enabled bot)."""
    server, out = deployment
    config = tmp_path / "host.toml"
    config.write_text(_watcher_wider_than_granted(server, out))
    host = Host(load_config(config), plugins=Plugins())
    reports, failed = Collector(), Collector()
    await host.bus.start()
    await host.bus.subscribe("system.bus.permission", reports)
    await host.bus.subscribe("system.bot.failed", failed)
    try:
        await host.start()
        await eventually(lambda: len(Recorder.seen.get("recorder", [])) == COUNT, 30, "recorder's numbers")
        await eventually(lambda: len(failed.events) >= 1, 30, "the watcher's failure reported")
        await host.bus.settle()
        states = {bot_id: runner.state for bot_id, runner in host.runners.items()}
        watcher = host.runners["watcher"]
        stats = host.bus.stats()["nats"]
        health = host.health()
        assert not [s for s in host.bus.subscriptions if s.name == "watcher"]
        assert watcher.subscription is None and watcher.bot is None
    finally:
        await host.stop()
    assert states == {
        "numbers": "running",
        "recorder": "running",
        "keeper": "running",
        "rogue": "running",
        "watcher": "failed",
    }
    assert watcher.restarts == 0
    assert "watcher" not in Recorder.instances  # never created
    assert [e.payload.bot_id for e in failed.events] == ["watcher"]
    reason = failed.events[0].payload.reason
    assert "'watcher'" in reason and "'analytics.>'" in reason and "nats-config" in reason
    assert [(e.payload.bot_id, e.payload.operation, e.payload.subject) for e in reports.events] == [
        ("watcher", "subscribe", "analytics.>")
    ]
    assert stats["bots"]["watcher"]["permission_violations"] == 1
    assert stats["permission_violations"] == 1
    assert not health.ready and health.bots["watcher"] == "failed"
    assert health.reasons == ("bot 'watcher' is failed",)
    assert [e.payload["n"] for e in Recorder.seen["recorder"]] == list(range(COUNT))
    print(f"failed reason: {reason}; health reasons: {health.reasons}")


async def test_a_reload_widening_a_subscription_past_the_grant_fails_only_that_bot(
    deployment: tuple[NatsServer, Path], tmp_path: Path
) -> None:
    """A reload that widens a running bot's patterns past its grant: the server refuses the new
    interest, the reload is applied and only that bot fails (its instance stopped, its subscription
    gone, reported on ``system.bot.failed``); the other bots are not touched."""
    server, out = deployment
    config = tmp_path / "host.toml"
    granted = _watcher_wider_than_granted(server, out).replace(
        'subscribe = ["analytics.>"]', 'subscribe = ["analytics.rogue.>"]'
    )
    config.write_text(granted)
    host = Host(load_config(config), plugins=Plugins())
    failed = Collector()
    await host.bus.start()
    await host.bus.subscribe("system.bot.failed", failed)
    try:
        await host.start()
        assert host.runners["watcher"].state == "running"
        await eventually(lambda: len(Recorder.seen.get("recorder", [])) == COUNT, 30, "recorder's numbers")
        others = {bot_id: runner for bot_id, runner in host.runners.items() if bot_id != "watcher"}
        config.write_text(_watcher_wider_than_granted(server, out))
        diff = await host.apply(load_config(config))
        await eventually(lambda: len(failed.events) >= 1, 30, "the watcher's failure reported")
        await host.bus.settle()
        states = {bot_id: runner.state for bot_id, runner in host.runners.items()}
        watcher = host.runners["watcher"]
        kept = all(host.runners[bot_id] is runner for bot_id, runner in others.items())
        health = host.health()
        assert not [s for s in host.bus.subscriptions if s.name == "watcher"]
        assert watcher.subscription is None and watcher.bot is None
    finally:
        await host.stop()
    assert [bot.id for bot in diff.rewired] == ["watcher"]
    assert kept
    assert states == {
        "numbers": "running",
        "recorder": "running",
        "keeper": "running",
        "rogue": "running",
        "watcher": "failed",
    }
    assert [e.payload.bot_id for e in failed.events] == ["watcher"]
    assert "'analytics.>'" in failed.events[0].payload.reason
    assert health.reasons == ("bot 'watcher' is failed",)


def test_config_show_never_prints_a_seed(
    deployment: tuple[NatsServer, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server, out = deployment
    monkeypatch.setenv(seed_env_name("numbers"), (out / "secrets" / "bots" / "numbers.nk").read_text())
    config = tmp_path / "host.toml"
    config.write_text(backend(server.url, out) + bots('["analytics.other.>"]'))
    assert cli_main(["config", "show", "--config", str(config)]) == 0
    assert cli_main(["config", "show", "--show-secrets", "--config", str(config)]) == 0
    shown = capsys.readouterr().out
    assert 'isolation = "per-bot"' in shown
    for seed in seeds(out):
        assert seed not in shown


async def test_a_bot_without_its_seed_fails_naming_the_bot_and_where_to_put_it(
    deployment: tuple[NatsServer, Path], tmp_path: Path
) -> None:
    server, out = deployment
    settings = load_config(_written(tmp_path, backend(server.url, out) + bots("[]"))).config.backend.nats
    with pytest.raises(ConfigError) as refused:
        bot_credentials(settings, "ghost", {})
    message = str(refused.value)
    assert "'ghost'" in message and seed_env_name("ghost") in message and "ghost.nk" in message
    assert bot_credentials(settings, "numbers", {}) == {"nkeys_seed": str(out / "secrets/bots/numbers.nk")}
    # A seed that is no seed: the connection fails, one line naming the bot, the value not shown.
    link = BotLink("numbers", settings, catalog, lambda *_: None, lambda _: None)
    with pytest.raises(BusError) as failed:
        await link.open({seed_env_name("numbers"): "SUAINVALIDSEED"}, True, lambda *_: None)
    assert "'numbers'" in str(failed.value) and "SUAINVALIDSEED" not in str(failed.value)


async def test_a_host_with_a_bot_without_a_seed_does_not_start(
    deployment: tuple[NatsServer, Path], tmp_path: Path
) -> None:
    server, out = deployment
    ghost = '\n[[bots]]\nid = "ghost"\ncode = "ORA"\nplugin = "tests.host_bots:Recorder"\n'
    config = _written(tmp_path, backend(server.url, out) + bots('["analytics.other.>"]') + ghost)
    host = Host(load_config(config), plugins=Plugins())
    try:
        with pytest.raises(ConfigError, match="bot 'ghost'.*CITARION_BOT_SEED_GHOST"):
            await host.start()
        assert not any(lane.link.opened for lane in host.bus._lanes.values())  # type: ignore[attr-defined]
    finally:
        await host.stop()


def _written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "other.toml"
    path.write_text(text)
    return path


def test_permission_violation_is_read_from_the_servers_error_text() -> None:
    assert permission_violation(Exception('nats: permissions violation for publish to "a.b"')) == (
        "publish",
        "a.b",
    )
    assert permission_violation(
        Exception('nats: Permissions Violation for Subscription to "x.>" using queue "q"')
    ) == ("subscribe", "x.>")
    assert permission_violation(Exception("nats: authorization violation")) is None


async def test_requests_and_replies_go_over_the_bots_own_connections(
    deployment: tuple[NatsServer, Path], tmp_path: Path
) -> None:
    """``numbers`` asks, ``recorder`` (which receives its events, so may answer it) replies: probe,
    request and reply over their own connections, the answer in ``_CIT.reply.numbers``. ``watcher``
    (which cannot receive numbers' events) forging an answer into that inbox is refused by the server."""
    server, out = deployment
    config = tmp_path / "host.toml"
    config.write_text(backend(server.url, out) + bots('["analytics.other.>"]'))
    bus = NatsBus(load_config(config).config.backend.nats)
    await bus.start()
    reports = Collector()
    await bus.subscribe("system.bus.permission", reports)
    asker, answerer, forger = bus.for_bot("numbers"), bus.for_bot("recorder"), bus.for_bot("watcher")
    asked: list[Event] = []

    async def answer(event: Event) -> None:
        asked.append(event)
        await answerer.reply(event, bus.catalog.make("analytics.number.answered", {"n": 2}, source="ORA"))

    try:
        await answerer.subscribe("analytics.number.>", answer, name="recorder")
        request = bus.catalog.make("analytics.number.asked", {"n": 1}, source="ORA")
        response = await asker.request(request, timeout=10)
        assert response.payload == {"n": 2} and response.correlation_id == request.id
        reply_to = asked[0].metadata["replyTo"]
        assert reply_to.startswith("_CIT.reply.numbers.")
        await forger.reply(asked[0], bus.catalog.make("analytics.rogue.answered", {"n": 0}, source="ORA"))
        assert isinstance(forger, BotView)
        await forger.link.sync(5)
        stats = bus.stats()["nats"]
    finally:
        await bus.close()
    assert [(e.payload.bot_id, e.payload.operation) for e in reports.events] == [("watcher", "publish")]
    assert reports.events[0].payload.subject == reply_to.lower()  # nats-py lower-cases the error line
    assert stats["bots"]["numbers"]["permission_violations"] == 0
    assert stats["bots"]["recorder"]["permission_violations"] == 0
    assert stats["bots"]["numbers"]["published"] == 1


async def test_a_bot_removed_by_a_reload_has_its_connection_closed(
    deployment: tuple[NatsServer, Path], tmp_path: Path
) -> None:
    server, out = deployment
    before = backend(server.url, out) + bots('["analytics.other.>"]')
    config = _written(tmp_path, before)
    host = Host(load_config(config), plugins=Plugins())
    await host.start()
    try:
        bus = host.bus
        assert isinstance(bus, NatsBus)
        watcher = bus._lanes["watcher"].link
        assert watcher.opened
        # The same topology without the watcher (the last bot of the file).
        after = before[: before.index('[[bots]]\nid = "watcher"')]
        await host.apply(load_config(_written(tmp_path, after)))
        assert "watcher" not in bus.stats()["nats"]["bots"]
        assert watcher.state == "closed" and watcher.nc.is_closed
        assert bus._lanes["recorder"].link.opened
    finally:
        await host.stop()


@pytest.mark.slow
async def test_the_platform_runs_per_bot_within_the_generated_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """configs/prod.toml (the whole platform: queue groups, durables, requests, a feed) with per-bot
    connections on a server running the permissions generated from it: it completes with the books
    balanced and not one refusal, every bot on a connection of its own."""
    root = Path(__file__).resolve().parents[1]
    prod = load_config(root / "configs" / "prod.toml")
    out = tmp_path / "deploy"
    write_deployment(prod, out, DeployOptions(store_dir=str(out / "store"), check=False))
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)
    with NatsServer.from_config(out / "nats-server.conf") as server:
        environ = {
            "CITARION_BACKEND__NATS__SERVERS": server.url,
            "CITARION_BACKEND__NATS__NKEYS_SEED": str(out / "secrets" / "host.nk"),
            "CITARION_BACKEND__NATS__ISOLATION": "per-bot",
            "CITARION_BACKEND__NATS__BOT_SEEDS_DIR": str(out / "secrets" / "bots"),
            "CITARION_HOST__PROGRESS_INTERVAL_S": "0",
            "CITARION_HOST__RECORD": "",
        }
        loaded = load_config(out / "citarion-host.toml", environ=environ)
        summary = await run_host(loaded, reload=False, handle_signals=False, out=io.StringIO())
    rows = {row["bot"]: row for row in summary["bots"]}
    assert summary["events"] > 8_000 and all(row["errors"] == 0 for row in rows.values())
    assert rows["lumi"]["stats"]["completed"] is True and rows["exchange"]["stats"]["balanced"] is True
    records = caplog.records
    assert not [r for r in records if "refused a bot's operation" in r.getMessage()]
    own = {
        getattr(r, "bot", None) for r in records if r.getMessage() == "bot connected to NATS as its own user"
    }
    assert own == {bot.id for bot in prod.config.bots if bot.enabled and (bot.publish or bot.subscribe)}
    print(f"per-bot platform run: {summary['events']} events, {summary['events_per_s']:.0f} events/s")


async def test_bots_own_connections_come_back_after_the_server_is_killed(
    deployment: tuple[NatsServer, Path], tmp_path: Path
) -> None:
    """SIGKILL of the server mid-stream (file storage): every bot's connection reconnects, the
    publisher's unacknowledged events are resent, the consumers go on (the named ephemeral one
    recreated by the host after the last event its bot saw), and every event arrives."""
    server, out = deployment
    count = 400
    text = backend(server.url, out).replace('storage = "memory"', 'storage = "file"')
    text += "reconnect_wait_s = 0.05\nreconnect_wait_max_s = 0.2\n"
    text += bots('["analytics.other.>"]').replace(f"count = {COUNT}", f"count = {count}\npace_s = 0.002")
    config = _written(tmp_path, text.replace("analytics.rogue.emitted", "analytics.other.emitted"))
    host = Host(load_config(config), plugins=Plugins())
    await host.start()
    try:
        await eventually(lambda: len(Recorder.seen.get("recorder", [])) >= 40, 30, "40 numbers")
        await asyncio.to_thread(server.kill)
        away = "its own NATS connection is disconnected"
        await eventually(lambda: any(away in r for r in host.health().reasons), 30, "readiness says so")
        await asyncio.to_thread(server.start)
        for bot_id in ("recorder", "keeper"):
            await eventually(
                lambda b=bot_id: {e.payload["n"] for e in Recorder.seen.get(b, [])} == set(range(count)),
                60,
                f"every number at {bot_id}",
            )
        bus = host.bus
        assert isinstance(bus, NatsBus)
        stats = bus.stats()["nats"]
        await eventually(lambda: host.health().ready, 30, "ready again")
    finally:
        await host.stop()
    assert stats["permission_violations"] == 0
    assert all(lane["connection"] == "connected" for lane in stats["bots"].values())
    print(
        f"after the kill: recorder handled {len(Recorder.seen['recorder'])}, "
        f"keeper {len(Recorder.seen['keeper'])} of {count}; unstored {bus.unstored}"
    )


async def test_a_bots_events_refused_for_want_of_storage_make_the_host_not_ready(tmp_path: Path) -> None:
    """Per-bot isolation: a bot's events go out through its own connection and publisher, so the
    server's "insufficient resources" answer reaches that publisher, not the host's. The host is not
    ready, naming the bot, as it is when its own publishes are refused."""
    granted = tmp_path / "granted.toml"
    granted.write_text(backend("nats://127.0.0.1:4222", tmp_path) + bots('["analytics.other.>"]'))
    out = tmp_path / "deploy"
    write_deployment(load_config(granted), out, DeployOptions(store_dir=str(out / "store"), check=False))
    conf = out / "nats-server.conf"
    conf.write_text(conf.read_text().replace("jetstream {\n", "jetstream {\n  max_memory_store: 4KB\n", 1))
    with NatsServer.from_config(conf) as server:
        config = tmp_path / "host.toml"
        quick_stop = backend(server.url, out).replace(
            "summary = false\n", "summary = false\ndrain_timeout_s = 2.0\n"
        )
        config.write_text(quick_stop + bots('["analytics.other.>"]'))
        host = Host(load_config(config), plugins=Plugins())
        await host.start()
        try:
            refused = "bot 'numbers': JetStream refuses to store its events: insufficient resources (err_code 10023)"
            await eventually(lambda: refused in host.health().reasons, 30, "the bot's refusal in the health")
            assert not host.health().ready
        finally:
            await host.stop()
