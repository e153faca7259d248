"""Bot replicas across host processes: seats held by leases, standbys, takeovers and fencing.

A bot with ``replicas = N > 1`` (``[[bots]]``, ``docs/deploy.md``) may run in several host processes on
one NATS JetStream. Each of its instances must hold a *seat* to handle events: a lease
(:mod:`~citarion_host.lease`) on the key ``<bot id>.<seat>`` of the ``[replicas] bucket``.

* A bot **without state** has N seats: up to N instances handle events at once, sharing the bot's one
  durable consumer as a queue group (the server hands each event to one of them; an event delivered to
  an instance that dies unacknowledged comes back to a live one after ``ack_wait_s``). A further
  instance stands by until a seat frees.
* A bot **with state** (``Bot.keeps_state()``) has one seat: one active instance, the others stand by.
  The one that takes the seat over restores the bot's state from the state store (the key-value
  bucket) and subscribes the bot's durable consumer, rewound to that state (``docs/state.md``): the
  events the dead instance handled after its last snapshot are handled again quietly, none is lost.

A standby has no subscription and never handles an event. The holder of a seat renews its lease every
``renew_s``; if it cannot (partitioned, stalled), it is **fenced** at its lease's deadline, before any
standby may take over: it begins no further event and takes no further snapshot, then its instance is
stopped and its subscription closed (the events it held go back to the server unacknowledged; the one
being handled at the fence finishes or is cancelled); it then stands by again. Every change is
reported on ``system.bot.*``: ``standby``, ``takeover``, then ``started``.

Each replica's seat work runs in one task; the host owns the :class:`Replicas` and calls it at start,
at a reload and at stop (the seats are released after the last snapshots are written).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nats.errors import Error as NatsError

from .bus import EventBus
from .errors import ConfigError
from .lease import Lease, LeaseBucket, LeaseTiming, holder_id, open_lease_bucket
from .settings import BotConfig, HostConfig
from .supervisor import BotRunner

__all__ = ["Replica", "Replicas", "keeps_state", "seats_of"]

log = logging.getLogger("citarion_host.replicas")

MakeRunner = Callable[[BotConfig], BotRunner]
Restore = Callable[[BotRunner], Awaitable[None]]


def keeps_state(bot_type: type[Any]) -> bool:
    """Does the bot type keep state (``docs/state.md``)? Then it runs one active instance at most."""
    keeps = getattr(bot_type, "keeps_state", None)
    return bool(keeps is not None and keeps())


def seats_of(config: BotConfig, bot_type: type[Any]) -> int:
    """How many instances of the bot may handle events at once."""
    return 1 if keeps_state(bot_type) else config.replicas


class Replica:
    """One replicated bot on this host: its runner (standby or active) and its seat (see the module
    docstring)."""

    def __init__(
        self,
        runner: BotRunner,
        seats: int,
        group: str | None,
        bucket: LeaseBucket,
        make_runner: MakeRunner,
        restore: Restore,
        forget_local: Callable[[str], None],
    ) -> None:
        self.runner = runner
        self.bot_id = runner.config.id
        self.keys = [f"{self.bot_id}.{seat}" for seat in range(seats)]
        #: The queue group every instance of this bot joins (a bot without state), else None.
        self.group = group
        self.bucket = bucket
        self.timing = bucket.timing
        self._make_runner = make_runner
        self._restore = restore
        self._forget_local = forget_local
        self.lease: Lease | None = None
        self.takeovers = 0
        self.fences = 0
        self.closing = False
        self._lost = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._activation: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.fence_reason: str | None = None  # why it was fenced last

    @property
    def active(self) -> bool:
        return self.lease is not None and not self._lost.is_set()

    def start(self) -> None:
        self.runner.stand_by(f"waiting for a seat ({len(self.keys)} of {self.runner.config.replicas})")
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"replica:{self.bot_id}")

    async def _run(self) -> None:
        while not self.closing:
            lease = await self._contend()
            await self._serve(lease)

    async def _contend(self) -> Lease:
        """Look at every seat each ``renew_s`` until one is won."""
        while True:
            for key in self.keys:
                try:
                    lease = await self.bucket.acquire(key)
                except Exception as exc:  # no answer (NATS errors, a timeout): look again later
                    log.warning("lease bucket not answering", extra={"bot": self.bot_id, "error": repr(exc)})
                    break
                if lease is not None:
                    return lease
            await asyncio.sleep(self.timing.renew_s)

    async def _serve(self, lease: Lease) -> None:
        """Hold ``lease``: start the bot, renew until the lease is lost (fenced) or the host stops."""
        self.lease = lease
        self._lost = asyncio.Event()
        self._arm()
        loop = asyncio.get_running_loop()
        keeper = loop.create_task(self._keep(lease), name=f"lease:{lease.key}")
        self._activation = loop.create_task(self._activate(lease), name=f"takeover:{self.bot_id}")
        try:
            await self._lost.wait()
        finally:
            for task in (keeper, self._activation):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(keeper, self._activation, return_exceptions=True)
            if self._timer is not None:
                self._timer.cancel()
        if not self.closing:
            await self._retire()

    def _arm(self) -> None:
        """Fence at the lease's deadline unless a renewal moves it first."""
        if self._timer is not None:
            self._timer.cancel()
        lease = self.lease
        if lease is None:
            return
        delay = max(lease.deadline - self.bucket.clock(), 0.0)
        self._timer = asyncio.get_running_loop().call_later(
            delay, self.fence, f"lease {lease.key} not renewed in time (lease_ttl_s - renew_s)"
        )

    async def _keep(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self.timing.renew_s)
            try:
                renewed = await asyncio.wait_for(self.bucket.renew(lease), self.timing.ttl_s)
            except (NatsError, TimeoutError) as exc:  # retried at the next interval; fenced at the deadline
                log.warning("lease renewal failed", extra={"key": lease.key, "error": repr(exc)})
                continue
            if not renewed:
                self.fence(f"lease {lease.key} taken by another instance")
                return
            self._arm()

    async def _activate(self, lease: Lease) -> None:
        """The seat is ours: restore the bot's state from the store and start it. A consumer still bound
        to the previous holder (the server has not yet noticed it is gone) is waited for."""
        runner = self.runner
        if lease.took_over is not None:
            self.takeovers += 1
        reason = f"seat {lease.key}" + (f" taken over from {lease.took_over}" if lease.took_over else "")
        log.warning("replica takes its seat", extra={"bot": self.bot_id, "reason": reason})
        runner.report_takeover(reason)
        runner.group = self.group
        while True:
            self._forget_local(self.bot_id)  # the store's snapshot is the newest: another host wrote it
            try:
                await self._restore(runner)
                await runner.start()
                return
            except ConfigError as exc:  # a stored state this code cannot take: no instance can run it
                log.error("replica cannot take its state", extra={"bot": self.bot_id, "error": str(exc)})
                runner.stand_by(f"cannot take its state: {exc}")
                return
            except Exception as exc:  # e.g. the durable still bound to the previous holder: try again
                log.warning("replica could not start yet", extra={"bot": self.bot_id, "error": repr(exc)})
                await asyncio.sleep(self.timing.renew_s)

    def fence(self, reason: str) -> None:
        """Stop handling at once (the lease is lost or about to be): no further event is begun and no
        snapshot taken by this instance; the replica's task then stops it, which gives the events it
        holds back to the server unacknowledged (the one being handled finishes or is cancelled)."""
        if self._lost.is_set() or self.lease is None:
            return
        runner = self.runner
        runner.hold()
        runner.checkpoints = None  # no snapshot of this instance from here on
        self._forget_local(self.bot_id)
        if self._activation is not None:
            self._activation.cancel()
        self.fences += 1
        self.fence_reason = reason
        log.error("replica fenced: it handles nothing more", extra={"bot": self.bot_id, "reason": reason})
        self._lost.set()

    async def _retire(self) -> None:
        """Stop the fenced instance (its subscription detached: the consumer is free for the next
        holder, what it held goes back) and stand by with a fresh one."""
        old = self.runner
        self.lease = None
        await old.stop(drain=False)
        fresh = self._make_runner(old.config)
        fresh.carry_over(old)
        self.runner = fresh
        fresh.stand_by(f"fenced: {self.fence_reason}")

    # -- the host stopping --------------------------------------------------------------------------

    async def quiesce(self) -> None:
        """The host stops: a standby stops contending (an active replica keeps renewing until release)."""
        self.closing = True
        if self.lease is None and self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def release(self) -> None:
        """Give the seat back (after the instance stopped and its last snapshot was written)."""
        self.closing = True
        lease = self.lease
        self._lost.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if lease is not None:
            self.lease = None
            released = await self.bucket.release(lease)
            log.info("replica seat released", extra={"key": lease.key, "released": released})

    def stats(self) -> dict[str, Any]:
        return {
            "seats": len(self.keys),
            "seat": self.lease.key if self.lease is not None else None,
            "active": self.active,
            "takeovers": self.takeovers,
            "fences": self.fences,
            "fence_reason": self.fence_reason,
        }


class Replicas:
    """The replicated bots of one host (see the module docstring)."""

    def __init__(
        self, make_runner: MakeRunner, restore: Restore, forget_local: Callable[[str], None]
    ) -> None:
        self._make_runner = make_runner
        self._restore = restore
        self._forget_local = forget_local
        self._bucket: LeaseBucket | None = None
        self._bus: EventBus | None = None
        self.replicas: dict[str, Replica] = {}

    async def open(self, config: HostConfig, bus: EventBus, bots: Sequence[BotConfig]) -> None:
        """Bind to the lease bucket when this host runs a replicated bot on NATS JetStream (elsewhere
        ``replicas`` has no effect, as ``check`` says). Bound once per bus: a reload that adds a
        replicated bot calls it again."""
        if self._bus is bus and self._bucket is not None:
            return
        self._bucket, self._bus = None, bus
        backend = config.backend
        if not (backend.type == "nats" and backend.nats.jetstream and any(b.replicas > 1 for b in bots)):
            return
        from .bus.nats import NatsBus  # lazily: the memory backend never needs nats-py

        if not isinstance(bus, NatsBus):
            return
        settings = config.replicas
        kv = await open_lease_bucket(bus.nc, backend.nats, settings.bucket)
        timing = LeaseTiming(settings.lease_ttl_s, settings.renew_s)
        self._bucket = LeaseBucket(kv, timing, holder_id(config.host.name))

    def manages(self, config: BotConfig) -> bool:
        return self._bucket is not None and config.replicas > 1

    def is_standby(self, bot_id: str) -> bool:
        replica = self.replicas.get(bot_id)
        return replica is not None and not replica.active

    def enroll(self, runner: BotRunner) -> None:
        """Make ``runner`` a standby that contends for a seat (the host does not start it itself)."""
        assert self._bucket is not None
        bot_type = runner.bot_type
        replica = Replica(
            runner,
            seats_of(runner.config, bot_type),
            None if keeps_state(bot_type) else runner.config.consumer,  # they share the bot's consumer
            self._bucket,
            self._make_runner,
            self._restore,
            self._forget_local,
        )
        self.replicas[runner.config.id] = replica
        replica.start()

    async def quiesce(self) -> None:
        for replica in self.replicas.values():
            await replica.quiesce()

    async def release(self) -> None:
        for replica in list(self.replicas.values()):
            await replica.release()
        self.replicas.clear()

    async def drop(self, bot_id: str) -> None:
        """The bot left this host (a reload, an operator's stop): give its seat back."""
        replica = self.replicas.pop(bot_id, None)
        if replica is not None:
            await replica.release()

    def stats(self) -> dict[str, dict[str, Any]]:
        return {bot_id: replica.stats() for bot_id, replica in self.replicas.items()}
