"""The generated permissions, enforced by a real nats-server: the permission matrix of configs/prod.toml.

One server for the module, started from the config ``nats-config`` writes. The host user creates the
stream and every bot's consumer (as the host will); then each bot connects with its own seed, through
raw nats-py, and tries what it may and may not do. A refusal is observed as the server's asynchronous
permissions violation (nats-py's ``error_cb``), and nothing arrives at an observer subscribed to ``>``.

Completeness without sleeps: after its attempts a bot sends a message to its own inbox and waits for it
(``sync_with_server``); the server handles a connection's commands in order and nats-py hands the
``-ERR`` to ``error_cb`` inline, so every violation is recorded by then.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from citarion_host.bot import PublishGuard
from citarion_host.bus.nats.connection import sync_with_server
from citarion_host.bus.nats.stream import stream_config
from citarion_host.errors import PublishNotAllowedError
from citarion_host.events import catalog
from citarion_host.natsauth import bot_consumer, inbox_prefix, reply_prefix
from citarion_host.natsconf import DeployOptions, write_deployment
from citarion_host.natsserver import NatsServer
from citarion_host.settings import BotConfig, HostConfig, load_config
from citarion_host.topics import contains, matches, overlaps

ROOT = Path(__file__).resolve().parents[1]
PROD = load_config(ROOT / "configs" / "prod.toml")
BOTS = PROD.config.bots
STREAM = PROD.config.backend.nats.stream

pytestmark = pytest.mark.nats


@dataclass
class Deployment:
    server: NatsServer
    out: Path
    config: HostConfig

    def seed(self, user: str | None) -> str:
        return str(self.out / "secrets" / ("host.nk" if user is None else f"bots/{user}.nk"))


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    out = tmp_path_factory.mktemp("deploy")
    write_deployment(PROD, out, DeployOptions(store_dir=str(out / "store"), check=False))
    with NatsServer.from_config(out / "nats-server.conf") as server:
        deployment = Deployment(server, out, PROD.config)
        asyncio.run(_create_stream_and_consumers(deployment))
        yield deployment


async def _create_stream_and_consumers(deployment: Deployment) -> None:
    """What the host user does before the bots connect: the stream, and one consumer per bot."""
    nc = await nats.connect(deployment.server.url, nkeys_seed=deployment.seed(None))
    try:
        jsm = nc.jsm()
        await jsm.add_stream(stream_config(deployment.config.backend.nats, catalog.domains))
        for bot in BOTS:
            consumer = bot_consumer(bot, STREAM)
            if consumer is not None:
                await jsm.add_consumer(
                    STREAM,
                    api.ConsumerConfig(
                        durable_name=consumer.name,
                        deliver_subject=consumer.deliver_subject,
                        deliver_group=consumer.queue,
                        filter_subjects=list(consumer.filter_subjects),
                        ack_policy=api.AckPolicy.EXPLICIT,
                        deliver_policy=api.DeliverPolicy.NEW,
                    ),
                )
    finally:
        await nc.close()


class Violations:
    """The permissions violations the server reported to one connection."""

    def __init__(self) -> None:
        self.messages: list[str] = []

        async def record(error: Exception) -> None:  # nats-py wants a coroutine function
            self.messages.append(str(error))

        self.callback = record

    def refused(self, kind: str, subject: str) -> bool:
        """``kind``: ``publish`` or ``subscription``."""
        wanted = f'permissions violation for {kind} to "{subject}"'.casefold()
        return any(message.casefold().endswith(wanted) for message in self.messages)


async def connect_bot(deployment: Deployment, bot_id: str) -> tuple[Client, Violations]:
    violations = Violations()
    nc = await nats.connect(
        deployment.server.url,
        nkeys_seed=deployment.seed(bot_id),
        inbox_prefix=inbox_prefix(bot_id),
        error_cb=violations.callback,
        allow_reconnect=False,
    )
    return nc, violations


@pytest.fixture
async def observer(deployment: Deployment) -> AsyncIterator[tuple[Client, list[str]]]:
    """The host user listening to every subject: what a bot's publish actually delivered."""
    nc = await nats.connect(deployment.server.url, nkeys_seed=deployment.seed(None))
    seen: list[str] = []

    async def on_msg(msg: Msg) -> None:
        seen.append(msg.subject)

    try:
        await nc.subscribe(">", cb=on_msg)
        await sync_with_server(nc, 5)
        yield nc, seen
    finally:
        await nc.close()


def concrete(pattern: str) -> str:
    """A topic the pattern matches."""
    return ".".join("x" if t == "*" else "x.y" if t == ">" else t for t in pattern.split("."))


def candidates() -> list[str]:
    """Topics any bot declares, made concrete, plus a few nobody declares."""
    topics = [concrete(p) for bot in BOTS for p in (*bot.publish, *bot.subscribe)]
    return list(dict.fromkeys([*topics, "market.candle.x", "trading.order.submitted", "zzz.nobody.x"]))


def other_bot(bot: BotConfig) -> BotConfig:
    """Another bot with a consumer (so it has a deliver subject and acks to steal)."""
    return next(
        o for o in BOTS if o.id != bot.id and o.subscribe and (o.queue or o.id) != (bot.queue or bot.id)
    )


BOT_IDS = [bot.id for bot in BOTS]


@pytest.mark.parametrize("bot_id", BOT_IDS)
async def test_a_bot_publishes_inside_its_patterns_and_is_refused_outside(
    deployment: Deployment, observer: tuple[Client, list[str]], bot_id: str
) -> None:
    """Every topic any bot declares (made concrete), and some nobody does: exactly those inside the
    bot's patterns are delivered, each of the others is refused by the server."""
    bot = PROD.config.bot(bot_id)
    nc, violations = await connect_bot(deployment, bot_id)
    admin, seen = observer
    topics = candidates()
    inside = {t for t in topics if any(matches(p, t) for p in bot.publish)}
    assert inside and len(inside) < len(topics)
    try:
        for topic in topics:
            await nc.publish(topic, b"{}")
        stored = await nc.jetstream().publish(sorted(inside)[0], b"{}")  # its ack comes to its inbox
        assert stored.stream == STREAM
        await sync_with_server(nc, 5)
        await sync_with_server(admin, 5)
        refused = {t for t in topics if violations.refused("publish", t)}
        assert refused == set(topics) - inside
        assert len(violations.messages) == len(refused), violations.messages
        assert set(seen) & set(topics) == inside, "delivered: exactly the publishes inside the patterns"
    finally:
        await nc.close()


@pytest.mark.parametrize("bot_id", BOT_IDS)
async def test_a_bot_subscribes_inside_its_patterns_and_is_refused_outside_and_elsewhere(
    deployment: Deployment, bot_id: str
) -> None:
    bot = PROD.config.bot(bot_id)
    other = other_bot(bot)
    other_consumer = bot_consumer(other, STREAM)
    assert other_consumer is not None
    nc, violations = await connect_bot(deployment, bot_id)
    try:
        for pattern in bot.subscribe:
            await nc.subscribe(pattern, cb=_ignore)
        forbidden = [
            *(t for t in candidates() if not any(matches(p, t) for p in bot.subscribe)),
            f"{inbox_prefix(other.id)}.>",  # another bot's private inbox
            f"{reply_prefix(other.id)}.>",  # another bot's reply inbox
            "_INBOX.>",  # every inbox
            other_consumer.deliver_subject,  # another bot's deliveries
        ]
        for subject in forbidden:
            await nc.subscribe(subject, cb=_ignore)
        await sync_with_server(nc, 5)
        assert [s for s in forbidden if not violations.refused("subscription", s)] == [], violations.messages
        assert len(violations.messages) == len(forbidden), violations.messages
    finally:
        await nc.close()


@pytest.mark.parametrize("bot_id", BOT_IDS)
async def test_a_bot_cannot_ack_inspect_or_change_another_consumer_nor_change_its_own(
    deployment: Deployment, bot_id: str
) -> None:
    bot = PROD.config.bot(bot_id)
    other = other_bot(bot)
    nc, violations = await connect_bot(deployment, bot_id)
    other_name = other.queue or other.id
    own = bot.queue or bot.id
    forbidden = [
        f"$JS.ACK.{STREAM}.{other_name}.1.1.1.1700000000000000000.0",
        f"$JS.API.CONSUMER.INFO.{STREAM}.{other_name}",
        f"$JS.API.CONSUMER.DELETE.{STREAM}.{other_name}",
        f"$JS.API.CONSUMER.CREATE.{STREAM}.{own}",  # it could widen its own filter
        f"$JS.API.CONSUMER.CREATE.{STREAM}.{own}.zzz.>",
        f"$JS.API.STREAM.UPDATE.{STREAM}",
        f"$JS.API.STREAM.PURGE.{STREAM}",
        f"{inbox_prefix(other.id)}.x",  # another bot's private inbox: forged publish acks, API answers
        "$KV.bucket.key",
    ]
    strangers = [o for o in BOTS if not _may_answer(bot, o)]
    if strangers:  # a bot whose requests it cannot receive: it has no reason to write to its reply inbox
        forbidden.append(f"{reply_prefix(strangers[0].id)}.x")
    try:
        for subject in forbidden:
            await nc.publish(subject, b"{}")
        await sync_with_server(nc, 5)
        assert [s for s in forbidden if not violations.refused("publish", s)] == []
    finally:
        await nc.close()


def _may_answer(responder: BotConfig, requester: BotConfig) -> bool:
    return any(overlaps(p, s) for p in requester.publish for s in responder.subscribe)


@pytest.mark.parametrize("bot_id", [bot.id for bot in BOTS if bot.subscribe])
async def test_a_bot_reads_and_acks_its_own_consumer(deployment: Deployment, bot_id: str) -> None:
    bot = PROD.config.bot(bot_id)
    consumer = bot_consumer(bot, STREAM)
    assert consumer is not None
    admin = await nats.connect(deployment.server.url, nkeys_seed=deployment.seed(None))
    nc, violations = await connect_bot(deployment, bot_id)
    got: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        await msg.ack()
        await got.put(msg)

    try:
        info = await nc.jsm().consumer_info(STREAM, consumer.name)  # its own consumer: allowed
        assert info.config.filter_subjects == list(consumer.filter_subjects)
        await nc.subscribe(consumer.deliver_subject, queue=consumer.queue or "", cb=on_msg)
        await sync_with_server(nc, 5)
        topic = concrete(bot.subscribe[0])
        stored = await admin.jetstream().publish(topic, b"{}")
        async with asyncio.timeout(10):
            while (msg := await got.get()).metadata.sequence.stream != stored.seq:
                pass
        assert msg.subject == topic and msg.reply.startswith(f"$JS.ACK.{STREAM}.{consumer.name}.")
        await sync_with_server(nc, 5)
        async with asyncio.timeout(10):
            while (
                info := await admin.jsm().consumer_info(STREAM, consumer.name)
            ).ack_floor.stream_seq < stored.seq:
                await asyncio.sleep(0.02)
        assert info.num_ack_pending == 0, "its acks reached the server"
        assert violations.messages == []
    finally:
        await nc.close()
        await admin.close()


async def _ignore(msg: Msg) -> None:
    pass


# -- the server agrees with the host's own rules, for random subjects ---------------------------------

TOKENS = sorted(
    {t for bot in BOTS for p in (*bot.publish, *bot.subscribe) for t in p.split(".")} - {"*", ">"}
)
DOMAINS = sorted({p.split(".")[0] for bot in BOTS for p in (*bot.publish, *bot.subscribe)} | {"zzz"})


@st.composite
def subjects(draw: st.DrawFn) -> str:
    """Event-like subjects (first token a domain, so never an inbox or API subject) that often match."""
    rest = draw(st.lists(st.sampled_from([*TOKENS, "x"]), min_size=0, max_size=4))
    return ".".join([draw(st.sampled_from(DOMAINS)), *rest])


@st.composite
def patterns(draw: st.DrawFn) -> str:
    tokens = [draw(st.sampled_from(DOMAINS))]
    tokens += draw(st.lists(st.sampled_from([*TOKENS, "x", "*"]), min_size=0, max_size=3))
    if draw(st.booleans()):
        tokens.append(">")
    return ".".join(tokens)


class Oracle:
    """One connection per bot on a loop of its own, kept across hypothesis examples (connecting 11
    bots per example would cost more than the examples)."""

    def __init__(self, deployment: Deployment) -> None:
        self.loop = asyncio.new_event_loop()
        self.connections = dict(zip(BOT_IDS, self.run(self._connect_all(deployment)), strict=True))

    async def _connect_all(self, deployment: Deployment) -> list[tuple[Client, Violations]]:
        return [await connect_bot(deployment, bot_id) for bot_id in BOT_IDS]

    def run(self, coro: object) -> object:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def refused(self, bot_id: str, kind: str, subjects: list[str]) -> set[str]:
        """Which of ``subjects`` the server refused to ``bot_id`` (publish or subscription)."""
        nc, violations = self.connections[bot_id]

        async def attempt() -> set[str]:
            violations.messages.clear()
            subs = []
            for subject in subjects:
                if kind == "publish":
                    await nc.publish(subject, b"")
                else:
                    subs.append(await nc.subscribe(subject, cb=_ignore))
            await sync_with_server(nc, 5)
            for sub in subs:
                await sub.unsubscribe()
            return {s for s in subjects if violations.refused(kind, s)}

        result = self.run(attempt())
        assert isinstance(result, set)
        return result

    def close(self) -> None:
        async def close_all() -> None:
            for nc, _ in self.connections.values():
                await nc.close()

        self.run(close_all())
        self.loop.close()


@pytest.fixture(scope="module")
def oracle(deployment: Deployment) -> Iterator[Oracle]:
    instance = Oracle(deployment)
    yield instance
    instance.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bot_id=st.sampled_from(BOT_IDS), topics=st.lists(subjects(), min_size=1, max_size=20, unique=True))
def test_the_server_refuses_exactly_the_publishes_the_host_refuses(
    oracle: Oracle, bot_id: str, topics: list[str]
) -> None:
    guard = PublishGuard(bot_id, PROD.config.bot(bot_id).publish)
    expected = set()
    for topic in topics:
        try:
            guard.check(topic)
        except PublishNotAllowedError:
            expected.add(topic)
    assert oracle.refused(bot_id, "publish", topics) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bot_id=st.sampled_from(BOT_IDS), wanted=st.lists(patterns(), min_size=1, max_size=20, unique=True))
def test_the_server_refuses_exactly_the_subscriptions_outside_the_declared_patterns(
    oracle: Oracle, bot_id: str, wanted: list[str]
) -> None:
    declared = PROD.config.bot(bot_id).subscribe
    expected = {p for p in wanted if not any(contains(d, p) for d in declared)}
    assert oracle.refused(bot_id, "subscription", wanted) == expected
