"""Deterministic runs split across host processes: one host gives the turns, the others take them.

Why: in one process the sequencer (``bus/sequencer.py``) makes a run a function of the program alone:
handlers one at a time, each event's consequences before the next event from outside. Split the same
topology over several processes (``run --only``) and each process would sequence only its own bots:
two bots on two hosts reacting to the same candle race to the stream, the third bot that reads both
sees them in either order, and the figures change from run to run. So one host, the **coordinator**
(the one running the feeds, ``[host] stop_on``'s publishers), runs the order of the *whole* topology:
its sequencer holds a stand-in subscription for every bot that runs elsewhere, at that bot's place in
the config's order, and when the stand-in's turn comes it asks the bot's host to run that bot on that
event now and waits for the answer, which lists what the handler published, in order. Those events
are announced to the coordinator's sequencer at that place (:meth:`Sequencer.claim`), exactly where a
local handler's publishes would have been. The other hosts, **followers**, hold every delivery for
their bots until its turn is asked for (:class:`Follower`). Starts and stops go the same way, in the
config's order (a start or stop report lands where it would in one process).

The result: the same order of handling as one process running the whole topology, so the same figures
(``tests/test_split_runs.py``). The price: a request/reply round trip per remote handler call, one
handler at a time across the fleet. It is a mode for runs that must be reproducible (backtests, paper
runs, their tests), not for live trading, where ``deterministic = false`` lets each host run freely.

What the coordinator does not order: events stored before it started (``begin``: each follower
handles those itself, as they come), events published by something outside the handlers and the
hosts' reports (a bot's own timer loop on a follower: handled where they arrive, in arrival order), and
a reload (a split deterministic run keeps the topology it started with). If the coordinator dies the
followers wait for it (their bots hold their deliveries; ``system.bus.stalled`` after
``stall_timeout_s`` if a turn is asked for and its event never comes).

Transport: core NATS request/reply on ``_CITARION.relay.<stream>.*`` over the hosts' own connections
(the host user may use every subject; no bot's user may use these). Nothing here is stored: the
events themselves are, and the turns only order them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from ...errors import BusError
from ...events import Event
from ...tasks import Tasks
from ..position import delivery_position
from ..sequencer import Sequencer

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.subscription import Subscription as NatsSubscription

    from ..subscription import Subscription
    from . import NatsBus

__all__ = ["PREFIX", "Coordinator", "Follower", "FollowerLink", "RelayError"]

log = logging.getLogger("citarion_host.bus.relay")

#: Subjects of the relay (core NATS, never stored): ``<PREFIX>.<stream>.<verb>[.<bot id>]``.
PREFIX = "_CITARION.relay"

#: What the bots publish while a follower runs a turn (or a start, a stop) for the coordinator.
_outputs: contextvars.ContextVar[list[Event] | None] = contextvars.ContextVar("relay_outputs", default=None)


class RelayError(BusError):
    """The coordinator could not get a turn, a start or a stop done by the host of a bot."""


class _Ask(msgspec.Struct, frozen=True):
    bot: str
    event: str = ""


class _Done(msgspec.Struct, frozen=True):
    ok: bool = True
    events: list[msgspec.Raw] = []
    error: str = ""


class _Begin(msgspec.Struct, frozen=True):
    after: int


_decode_done = msgspec.json.Decoder(_Done).decode
_decode_ask = msgspec.json.Decoder(_Ask).decode
_decode_begin = msgspec.json.Decoder(_Begin).decode
_encode = msgspec.json.Encoder().encode


def base_subject(stream: str) -> str:
    return f"{PREFIX}.{stream}"


class Follower(Sequencer):
    """A follower host's sequencer: the deliveries of its bots wait for their turn (:meth:`take_turn`).

    Everything else (the host's own subscriptions: the record, its reports; events stored before the
    coordinator began, :meth:`begin`; everything after :meth:`end`) is sequenced here as on any host.
    """

    def __init__(self, bots: Iterable[str], *, stall_timeout: float = 30.0, **options: Any) -> None:
        super().__init__(stall_timeout=stall_timeout, **options)
        #: Names of the subscriptions the coordinator drives: the ids of the bots this host runs.
        self.bots = frozenset(bots)
        #: The coordinator's start: deliveries at a later stream position wait for a turn.
        self.after: int | None = None
        self.following = True
        self._held: dict[tuple[str, str], tuple[Subscription, Event, Any]] = {}
        self._early: list[tuple[Subscription, Event, Any]] = []  # before the coordinator began
        self._changed = asyncio.Event()

    @classmethod
    def replacing(cls, sequencer: Sequencer, bots: Iterable[str]) -> Follower:
        """A follower with ``sequencer``'s settings (its bus's), driving the subscriptions ``bots``."""
        return cls(
            bots,
            stall_timeout=sequencer.stall_timeout,
            on_stall=sequencer.on_stall,
            external_limit=sequencer.external_limit,
        )

    @property
    def held(self) -> int:
        """Deliveries waiting for their turn."""
        return len(self._held) + len(self._early)

    def arrived(self, subscription: Subscription, event: Event, receipt: Any = None) -> None:
        if not (self.following and subscription.name in self.bots):
            super().arrived(subscription, event, receipt)
            return
        if self.after is None:
            self._early.append((subscription, event, receipt))
            return
        receipts = subscription.receipts
        position = receipts.position(receipt) if receipts is not None and receipt is not None else None
        if position is not None and position <= self.after:  # before the coordinator's time: ours
            super().arrived(subscription, event, receipt)
            return
        self._held[(subscription.name, event.id)] = (subscription, event, receipt)
        self._changed.set()

    def arrived_all(self, subscriptions: Sequence[Subscription], event: Event, receipt: Any) -> None:
        for subscription in subscriptions:  # each through :meth:`arrived`: some may be held
            self.arrived(subscription, event, receipt)

    def expect(self, event: Event, subscribers: Iterable[Subscription]) -> None:
        outputs = _outputs.get()
        if outputs is not None:
            outputs.append(event)
        if self.following:  # our bots get it when the coordinator says
            subscribers = [s for s in subscribers if s.name not in self.bots]
        super().expect(event, subscribers)

    def begin(self, after: int) -> None:
        """The coordinator began after stream position ``after``."""
        if self.after is not None:
            return
        self.after = after
        early, self._early = self._early, []
        for subscription, event, receipt in early:
            self.arrived(subscription, event, receipt)

    def end(self) -> None:
        """The coordinator is done: what is still held is handled here, in arrival order."""
        self.following = False
        held = [*self._early, *self._held.values()]
        self._early.clear()
        self._held.clear()
        for subscription, event, receipt in held:
            super().arrived(subscription, event, receipt)
        self._changed.set()

    async def take_turn(self, bot: str, event_id: str) -> list[Event] | None:
        """Run ``bot`` on the event ``event_id`` once its delivery is here; what it published (None:
        the delivery never came within ``stall_timeout``, or the coordinator ended meanwhile)."""
        key = (bot, event_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stall_timeout
        while key not in self._held:
            remaining = deadline - loop.time()
            if not self.following or remaining <= 0:
                return None
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                return None
        subscription, event, receipt = self._held.pop(key)
        outputs = await collect(subscription.run(event, receipt))
        return outputs


async def collect(work: Awaitable[Any]) -> list[Event]:
    """Await ``work`` and return the events published meanwhile (announced through a :class:`Follower`)."""
    outputs: list[Event] = []
    token = _outputs.set(outputs)
    try:
        await work
    finally:
        _outputs.reset(token)
    return outputs


class _Link:
    """The relay's transport on one bus's connection."""

    def __init__(self, bus: NatsBus) -> None:
        self.bus = bus
        self.subject = base_subject(bus.settings.stream)
        self._subs: list[NatsSubscription] = []
        self._tasks = Tasks("relay")  # the answers being worked out, one task each

    @property
    def nc(self) -> Client:
        return self.bus.nc

    @property
    def waiting(self) -> bool:
        """A follower whose coordinator has not begun the run yet (the host is not ready meanwhile)."""
        return False

    async def _listen(self, subject: str, callback: Callable[[Msg], Awaitable[None]]) -> None:
        self._subs.append(await self.nc.subscribe(subject, cb=callback))

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(NatsError):  # the connection is gone already
                await sub.unsubscribe()
        self._subs.clear()
        await self._tasks.cancel_all(timeout=5.0)


class Coordinator(_Link):
    """The host that orders the whole topology: stand-ins for the bots other hosts run."""

    def __init__(self, bus: NatsBus, *, wait_s: float) -> None:
        super().__init__(bus)
        sequencer = bus.sequencer
        if sequencer is None:
            raise ValueError("the coordinator needs a deterministic bus (a sequencer)")
        self.sequencer = sequencer
        #: How long to wait for a follower to answer for one of its bots (started late, restarting).
        self.wait_s = wait_s
        self.after: int | None = None
        self._remote: list[str] = []
        self._standins: dict[str, Subscription] = {}

    async def add(self, bot: str, patterns: Sequence[str]) -> None:
        """A stand-in for ``bot`` (run by another host) at this place in the order."""
        self._remote.append(bot)
        if not patterns:
            return
        subject = f"{self.subject}.turn.{bot}"

        async def turn(event: Event) -> None:
            position = delivery_position()
            if position is None or self.after is None or position <= self.after:
                return  # not from the stream (a report to this host only), or before we began
            self._claim(await self._ask(subject, _Ask(bot, event.id), self.sequencer.stall_timeout))

        self._standins[bot] = await self.bus.subscribe(list(patterns), turn, name=f"relay:{bot}", stored=True)

    async def begin(self) -> None:
        """Wait until every follower answers for its bots, then tell them where our order starts."""
        for bot in self._remote:
            await self._ask(f"{self.subject}.ready.{bot}", _Ask(bot), self.wait_s, patient=True)
        self.after = await self.bus.stream_position()
        begin = _encode(_Begin(self.after))

        async def hello(msg: Msg) -> None:
            await msg.respond(begin)

        await self._listen(f"{self.subject}.hello", hello)
        await self.nc.publish(f"{self.subject}.begin", begin)
        await self.nc.flush()
        log.info("coordinating a split run", extra={"remote_bots": self._remote, "after": self.after})

    def runs_remotely(self, bot: str) -> bool:
        return bot in self._remote

    async def start(self, bot: str) -> None:
        """Start ``bot`` on its host now; what the start published takes its place here."""
        await self._control("start", bot)

    async def stop(self, bot: str) -> None:
        """Stop ``bot`` on its host now (drained); what the stop published takes its place here. Its
        stand-in goes first, as a local bot's subscription does: its own stop report is not its."""
        standin = self._standins.pop(bot, None)
        if standin is not None:
            await standin.unsubscribe(drain=True)
        await self._control("stop", bot)

    async def _control(self, verb: str, bot: str) -> None:
        """Ask ``bot``'s host to ``verb`` it, no event of ours starting meanwhile (:meth:`Sequencer.hold`)."""
        async with self.sequencer.hold():
            self._claim(await self._ask(f"{self.subject}.{verb}.{bot}", _Ask(bot), self.wait_s, patient=True))

    async def end(self) -> None:
        """Tell the followers the order is complete: they finish on their own from here."""
        try:
            await self.nc.publish(f"{self.subject}.end", b"")
            await self.nc.flush()
        except NatsError as exc:
            log.error("could not tell the followers the run ended", extra={"error": repr(exc)})

    def _claim(self, done: _Done) -> None:
        bus, sequencer = self.bus, self.sequencer
        for raw in done.events:
            event = bus.catalog.decode(bytes(raw))
            sequencer.claim(event, bus.local_subscribers(event))

    async def _ask(self, subject: str, ask: _Ask, timeout: float, *, patient: bool = False) -> _Done:
        """Request ``subject`` (retrying while nobody answers, if ``patient``) and return the answer."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        body = _encode(ask)
        while True:
            remaining = deadline - loop.time()
            try:
                msg = await self.nc.request(subject, body, timeout=max(remaining, 0.001))
            except NoRespondersError:
                if not patient or remaining <= 0:
                    raise RelayError(
                        f"no host runs bot {ask.bot!r} ({subject}): start it with run --only"
                    ) from None
                await asyncio.sleep(min(0.2, max(remaining, 0.0)))
                continue
            except NatsTimeoutError:
                raise RelayError(
                    f"bot {ask.bot!r}'s host did not answer {subject.rsplit('.', 2)[-2]!r}"
                    f"{' for event ' + ask.event if ask.event else ''} within {timeout:g}s"
                ) from None
            done = _decode_done(msg.data)
            if not done.ok:
                raise RelayError(f"bot {ask.bot!r}'s host: {done.error}")
            return done


class FollowerLink(_Link):
    """A follower host's side: turns, starts and stops asked by the coordinator, for its bots."""

    def __init__(
        self,
        bus: NatsBus,
        follower: Follower,
        *,
        start: Callable[[str], Awaitable[None]],
        stop: Callable[[str], Awaitable[None]],
        ended: asyncio.Event | None = None,
    ) -> None:
        super().__init__(bus)
        self.follower = follower
        self._start, self._stop = start, stop
        #: Set when the coordinator says the run's order is complete (the host's ``finished``).
        self.ended = ended or asyncio.Event()

    @property
    def waiting(self) -> bool:
        return self.follower.after is None and not self.ended.is_set()

    async def open(self) -> None:
        """Answer for our bots (their subscriptions exist now), then learn where the order starts."""

        async def on_begin(msg: Msg) -> None:
            self.follower.begin(_decode_begin(msg.data).after)

        async def on_end(_msg: Msg) -> None:
            if not self.ended.is_set():
                log.info("the coordinator ended the split run")
                self.follower.end()
                self.ended.set()

        await self._listen(f"{self.subject}.begin", on_begin)
        await self._listen(f"{self.subject}.end", on_end)
        for bot in sorted(self.follower.bots):
            await self._listen(f"{self.subject}.turn.{bot}", self._serving(self._turn))
            await self._listen(f"{self.subject}.start.{bot}", self._serving(self._started))
            await self._listen(f"{self.subject}.stop.{bot}", self._serving(self._stopped))
            await self._listen(f"{self.subject}.ready.{bot}", self._serving(self._ready))
        await self.nc.flush()
        try:  # a coordinator already running says where it began
            msg = await self.nc.request(f"{self.subject}.hello", b"", timeout=2.0)
        except (NoRespondersError, NatsTimeoutError):
            return  # not yet: its ``begin`` broadcast will say
        self.follower.begin(_decode_begin(msg.data).after)

    def _serving(self, work: Callable[[_Ask], Awaitable[_Done]]) -> Callable[[Msg], Awaitable[None]]:
        """Each request served in its own task: a turn may wait for its bot's start, asked meanwhile."""

        async def serve(msg: Msg) -> None:
            async def answer() -> None:
                try:
                    done = await work(_decode_ask(msg.data))
                except Exception as exc:
                    log.exception("a relay request failed", extra={"subject": msg.subject})
                    done = _Done(ok=False, error=repr(exc))
                try:
                    await msg.respond(_encode(done))
                except NatsError as exc:
                    log.error("could not answer the coordinator", extra={"error": repr(exc)})

            self._tasks.spawn(answer(), "answer")

        return serve

    def _done(self, events: list[Event]) -> _Done:
        encode = self.bus.catalog.encode
        return _Done(events=[msgspec.Raw(encode(event)) for event in events])

    async def _turn(self, ask: _Ask) -> _Done:
        outputs = await self.follower.take_turn(ask.bot, ask.event)
        if outputs is None:
            return _Done(ok=False, error=f"event {ask.event} never reached bot {ask.bot!r} here")
        return self._done(outputs)

    async def _started(self, ask: _Ask) -> _Done:
        return self._done(await collect(self._start(ask.bot)))

    async def _stopped(self, ask: _Ask) -> _Done:
        return self._done(await collect(self._stop(ask.bot)))

    async def _ready(self, _ask: _Ask) -> _Done:
        return _Done()
