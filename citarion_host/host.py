"""The host: builds the topology from a config, runs it, applies changes, shuts down cleanly.

Order of operations, and why:

* **start** — check the whole topology first (registry rules, plugins, params), and refuse to start
  on any error, so a bad config never half-starts. Then open the bus and start each enabled bot. What
  only the NATS server can refuse (per-bot isolation: a subscription outside a bot's grant) fails
  that bot alone, at start or on a reload (``BotRunner.wire``); the others run.
* **apply** (reload) — check the new config the same way; if it is invalid, raise and leave the
  running topology untouched. Otherwise add new bots first, then rewire and restart changed ones,
  and stop removed ones last (after draining their backlog): bots that did not change are never
  touched and lose no event. A backend change stops everything and starts it on the new backend.
* **stop** — stop intake first (bots that publish but subscribe to nothing: the data feeds), let
  the bus settle (everything published is handled), then stop the others in reverse start order with
  their backlogs drained, then close the bus.

Bots that keep state (``docs/state.md``) get it back whenever they start: the host loads and checks
every stored state before a start or a reload changes anything (one that does not fit refuses it,
naming the bot and the field), a restarted bot gets its predecessor's state, and a backend switch
carries the states over (:class:`~citarion_host.hoststate.HostState`).

The host owns the bus it opened. Whatever watches the bus (the run monitor, the dashboard) registers
as an *observer* (:meth:`Host.observe`) and is handed the current bus: attached before any bot starts,
detached after the last one stopped, and moved along when a reload switches the backend.

Readiness is the host's to say (:meth:`Host.health`, ``health.py``): the dashboard's ``/readyz`` reads
it. A bus whose connection closed for good (the server gone past ``max_reconnect_attempts``, or the
server closing the connection) makes the host *lost*: reported once on ``system.host.unready`` and in
the log, and :attr:`Host.lost` set, so ``citarion-host run`` stops and exits non-zero instead of
idling with its bots shown "running".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .bus import EventBus, create_bus
from .errors import CitarionError, ConfigError
from .events import Event, EventCatalog
from .handlerwatch import HandlerWatch
from .health import UNREADY_TOPIC, Health
from .hoststate import HostState
from .loopwatch import LoopWatch
from .plugins import Plugins
from .registry import BotRegistry, load_registry
from .replicas import Replicas
from .settings import BotConfig, HostConfig, LoadedConfig
from .split import split_role
from .supervisor import HOST_SOURCE, BotRunner, State
from .timings import HandlerTimings
from .topics import overlaps
from .topology import Placement, TopologyDiff, diff_topology
from .wiring import Finding, WiringCheck, has_errors

if TYPE_CHECKING:
    from .bus.nats.relay import Coordinator, FollowerLink

__all__ = ["BusObserver", "Host"]

log = logging.getLogger("citarion_host.host")
_CONNECTION_CLOSED = "system.connection.closed"


class BusObserver(Protocol):
    """Something that watches the host's bus and must follow it (see :meth:`Host.observe`)."""

    async def attach(self, bus: EventBus) -> None:
        """Start watching ``bus`` (subscribe); called before any bot starts on it."""
        ...

    async def detach(self) -> None:
        """Stop watching the current bus (drain, unsubscribe); called before it closes."""
        ...


class Host:
    """Runs the bots of one configuration on one bus."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        plugins: Plugins | None = None,
        registry: BotRegistry | None = None,
        bus: EventBus | None = None,
        placement: Placement | None = None,
    ) -> None:
        self.loaded = loaded
        #: The bots of the topology this host runs (``run --only/--except``); the check covers all.
        self.placement = placement or Placement()
        unknown = self.placement.unknown(loaded.config)
        if unknown:
            raise ConfigError(f"{loaded.path}: --only/--except name bots the config does not have: {unknown}")
        self.plugins = plugins or Plugins.discover(
            import_timeout_s=loaded.config.host.plugin_import_timeout_s
        )
        self.registry = registry or load_registry()
        self.plugins.extend_registry(self.registry)
        #: The host's event types: the built-in ones and what its plugins add (never a global).
        self.catalog = bus.catalog if bus is not None else EventCatalog.with_builtins()
        self.plugins.extend_catalog(self.catalog)
        self.bus: EventBus = bus or create_bus(loaded.config.backend, catalog=self.catalog)
        self.runners: dict[str, BotRunner] = {}
        self.observers: list[BusObserver] = []
        self.final_stats: dict[str, dict[str, Any]] = {}  # per bot, taken when the host stopped
        self.finished = asyncio.Event()  # set when every ``stop_on`` publisher has reported
        self._stop_on_seen: set[str] = set()
        self._stop_on_expected = 0
        self._started = False
        self._apply_lock = asyncio.Lock()
        self._checked: LoadedConfig | None = None
        #: Bot state: the store, the latest snapshots (kept across reloads and backend switches).
        self.state = HostState()
        #: Reports a bot whose handler has been on one event for ``[host] handler_stuck_s``.
        self.handler_watch = HandlerWatch(self.runners)
        self.loop_watch = LoopWatch(self.runners)
        #: Bots with ``replicas`` > 1 on NATS JetStream: their seats, standbys and takeovers.
        self.replicas = Replicas(self._runner, self._restore, self.state.keeper.drop_local)
        #: Per bot, once someone asked for handler durations (:meth:`time_handlers`): kept across
        #: restarts and backend switches, so a histogram covers the run from then on.
        self.handler_timings: dict[str, HandlerTimings] | None = None
        self.stopped_by_operator: set[str] = set()  # bots stopped through :meth:`stop_bot`
        #: Set when the host cannot go on (its bus's connection closed for good): ``run`` stops on it.
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        #: A split deterministic run (``split.py``): this host's side of the relay, from :meth:`start`.
        self.relay: Coordinator | FollowerLink | None = None

    @property
    def config(self) -> HostConfig:
        return self.loaded.config

    @property
    def started(self) -> bool:
        """True from the end of :meth:`start` until :meth:`stop` closed the bus."""
        return self._started and not self.bus.closed

    # -- checks -----------------------------------------------------------------------------------

    _wiring: WiringCheck | None = None  # made by the first check; later checks reuse its answers

    def check(self, loaded: LoadedConfig) -> list[Finding]:
        """Findings for ``loaded``; raises ConfigError carrying the error findings if any.

        The check remembers its answers (:class:`~citarion_host.wiring.WiringCheck`): a reload that
        changes one bot re-checks that bot and what its patterns overlap, not the whole fleet.
        """
        if self._wiring is None:
            self._wiring = WiringCheck(self.registry, self.plugins)
        findings = self._wiring.check(loaded)
        self._checked = loaded
        for finding in findings:
            if finding.severity == "warning":
                log.warning("wiring warning", extra={"finding": str(finding)})
        if has_errors(findings):
            errors = [f for f in findings if f.severity == "error"]
            raise ConfigError(f"{loaded.path}: {len(errors)} wiring errors", errors)
        return findings

    # -- lifecycle --------------------------------------------------------------------------------

    def _placed(self, config: HostConfig) -> list[BotConfig]:
        """The enabled bots of ``config`` this host runs."""
        return [bot for bot in config.bots if bot.enabled and self.placement.runs(bot.id)]

    def time_handlers(self) -> dict[str, HandlerTimings]:
        """Count handler durations per bot from now on (the bots running now and every later one):
        two clock reads and a bucket per handled event, paid only once someone asks for them (the
        dashboard's ``/metrics``, at its first scrape)."""
        if self.handler_timings is None:
            self.handler_timings = {}
            for bot_id, runner in self.runners.items():
                runner.timings = self.handler_timings.setdefault(bot_id, HandlerTimings())
        return self.handler_timings

    def observe(self, observer: BusObserver) -> None:
        """Hand ``observer`` the host's bus from :meth:`start` on, and every bus after a backend switch."""
        self.observers.append(observer)

    async def start(self) -> None:
        if self._checked is not self.loaded:  # run_host checks before opening anything
            self.check(self.loaded)
        role = split_role(self.loaded, self.placement, self.bus)
        # First: a bot's start() that holds the loop is said too.
        self.loop_watch.start(self.config.host.loop_blocked_s)
        if role == "follower":
            self._follow()  # before any subscription exists: they all take the follower's sequencer
        await self.bus.start()
        await self.state.open(self.config, self.bus)
        await self.replicas.open(self.config, self.bus, self._placed(self.config))
        for observer in self.observers:
            await observer.attach(self.bus)
        if role != "follower":  # a follower finishes when the coordinator ends the run
            await self._watch_stop_on()
        await self._watch_bus()
        if role is None:
            await self._start_bots(self._placed(self.config))
        else:
            await self._start_split(role)
        self.state.start_timer(self.runners, self.config.state.every_s)
        self._watch_handlers(self.config)
        self._started = True
        self.plugins.manager.hook.citarion_host_started(host=self)
        log.info("host started", extra={"bots": list(self.runners), "backend": self.bus.name})

    def _runner(self, config: BotConfig) -> BotRunner:
        bot_type = self.plugins.resolve(config.plugin)
        runner = BotRunner(config, bot_type, self.bus, self.config.host, self._state_changed)
        self.state.attach(runner, self.config)
        if self.handler_timings is not None:
            runner.timings = self.handler_timings.setdefault(config.id, HandlerTimings())
        self.runners[config.id] = runner
        return runner

    async def _start_bots(self, bots: list[BotConfig], previous: dict[str, BotRunner] | None = None) -> None:
        """Subscribe every bot first, then start them: no bot's first events can be missed by
        another bot that merely comes later in the config (on NATS a late consumer would miss them).
        ``previous``: runners of the same ids whose counters carry over (a backend switch).

        Stored states are loaded and checked before anything else: a state that does not fit raises
        :class:`ConfigError` with no bot of ``bots`` started. A bot whose subscription the server
        refuses is failed by its wiring and not started; the others are. A replicated bot (``replicas``)
        is not started here: it stands by and starts when it wins a seat (``replicas.py``)."""
        runners = [self._runner(bot) for bot in bots]
        await self.state.load(runners, self.loaded)
        for runner in runners:
            self.runners[runner.config.id] = runner
            if previous and runner.config.id in previous:
                runner.carry_over(previous[runner.config.id])
        replicated = [runner for runner in runners if self.replicas.manages(runner.config)]
        runners = [runner for runner in runners if runner not in replicated]
        for runner in runners:
            await runner.wire(runner.config)
        for runner in runners:
            await runner.start(wired=True)
        for runner in replicated:
            self.replicas.enroll(runner)

    async def _restore(self, runner: BotRunner) -> None:
        """A replica taking its seat: its state as the store has it now (another host wrote it)."""
        await self.state.load([runner], self.loaded)

    # -- a split deterministic run (``split.py``, ``bus/nats/relay.py``) --------------------------------

    def _follow(self) -> None:
        from .bus.nats.relay import Follower

        sequencer = self.bus.sequencer
        assert sequencer is not None, "split_role gives a role to deterministic buses only"
        self.bus.sequencer = Follower.replacing(sequencer, (b.id for b in self._placed(self.config)))

    async def _start_split(self, role: str) -> None:
        """Like :meth:`_start_bots`, with the whole topology's order: the coordinator wires its bots
        and a stand-in for each bot of another host in the config's order, waits for every follower,
        then starts them all in that order (its own here, the others through their hosts); a follower
        wires its bots and leaves their starts to the coordinator."""
        from .bus.nats import NatsBus
        from .bus.nats.relay import Coordinator, Follower, FollowerLink

        bus = self.bus
        assert isinstance(bus, NatsBus), "split_role gives a role to NATS JetStream buses only"
        placed = self._placed(self.config)
        runners = {bot.id: self._runner(bot) for bot in placed}
        await self.state.load(list(runners.values()), self.loaded)
        if role == "follower":
            assert isinstance(bus.sequencer, Follower)
            for runner in runners.values():
                await runner.wire(runner.config)
            link = FollowerLink(
                bus, bus.sequencer, start=self._start_placed, stop=self._stop_placed, ended=self.finished
            )
            self.relay = link
            await link.open()
            return
        coordinator = self.relay = Coordinator(bus, wait_s=self.config.host.split_wait_s)
        order = [bot for bot in self.config.bots if bot.enabled]
        for bot in order:
            if bot.id in runners:
                await runners[bot.id].wire(bot)
            else:
                await coordinator.add(bot.id, list(dict.fromkeys(bot.subscribe)))
        await coordinator.begin()
        for bot in order:
            if bot.id in runners:
                await runners[bot.id].start(wired=True)
            else:
                await coordinator.start(bot.id)

    async def _start_placed(self, bot_id: str) -> None:
        await self.runners[bot_id].start(wired=True)

    async def _stop_placed(self, bot_id: str) -> None:
        runner = self.runners[bot_id]
        if runner.state != "stopped":
            await runner.stop(drain=True)

    async def _stop_one(self, bot_id: str, coordinator: Coordinator | None) -> bool:
        """Stop ``bot_id``, here or (split run) on its host; False when there was nothing to stop."""
        runner = self.runners.get(bot_id)
        if runner is not None:
            if runner.state == "stopped":  # already stopped by an operator (stop_bot)
                return False
            await runner.stop(drain=True)
            return True
        if coordinator is None or not coordinator.runs_remotely(bot_id):
            return False
        try:
            await coordinator.stop(bot_id)
        except CitarionError as exc:  # its host is gone: nothing to wait for
            log.error("could not stop a bot on its host", extra={"bot": bot_id, "error": str(exc)})
        return True

    async def stop(self) -> None:
        """Stop intake, settle, stop every bot, detach the observers, close the bus. Safe to call twice."""
        if self.bus.closed:
            return
        self.plugins.manager.hook.citarion_host_stopping(host=self)
        self.state.stop_timer()
        self.handler_watch.stop()
        await self.replicas.quiesce()  # no standby takes a seat now; the active ones keep theirs
        relay, self.relay = self.relay, None
        if relay is None:
            await self._stop_bots()
        else:
            from .bus.nats.relay import Coordinator

            await self._stop_bots(relay if isinstance(relay, Coordinator) else None)
            await relay.close()
        await self.state.close()  # the last snapshots written, while the bus (a KV store's) is open
        await self.replicas.release()  # then the seats: a standby elsewhere restores those snapshots
        for observer in self.observers:
            await observer.detach()
        await self.bus.close(drain=True, timeout=self.config.host.drain_timeout_s)
        self.loop_watch.stop()  # last: a bot's stop() that holds the loop is said too
        log.info("host stopped")

    async def _stop_bots(self, coordinator: Coordinator | None = None) -> None:
        """Feeds first, then the others in reverse start order, the bus settling after each: a bot's
        last events (and the host's report that it stopped) are handled by the bots still running, the
        same way on every run and every backend, before the next one stops. A split run's coordinator
        does it over the whole topology (the other hosts' bots through their hosts), then ends the run."""
        if coordinator is None:
            order = [(runner.config.id, bool(runner.config.subscribe)) for runner in self.runners.values()]
        else:
            order = [(bot.id, bool(bot.subscribe)) for bot in self.config.bots if bot.enabled]
        for bot_id, subscribes in order:
            if not subscribes:
                await self._stop_one(bot_id, coordinator)
        settled = await self._settle("the feeds stopped")
        for bot_id, subscribes in reversed(order):
            if subscribes and await self._stop_one(bot_id, coordinator) and settled:
                settled = await self._settle(f"bot {bot_id!r} stopped")
        if coordinator is not None:
            await coordinator.end()
        self.final_stats = {bot_id: runner.final_stats for bot_id, runner in self.runners.items()}
        self.runners.clear()

    def _watch_handlers(self, config: HostConfig) -> None:
        """(Re)start the handler watch with ``config``'s ``handler_stuck_s``, on the current bus (its
        report says who waits: every bot in deterministic mode)."""
        self.handler_watch.start(config.host.handler_stuck_s, self.bus.sequencer is not None)
        if config.host.loop_blocked_s != self.loop_watch.blocked_s:  # changed by a reload
            self.loop_watch.start(config.host.loop_blocked_s)

    async def _settle(self, after: str) -> bool:
        """Wait for the bus to settle, at most ``drain_timeout_s``. False past it: the bots left then
        stop without waiting for it again (a handler that does not return would cost that wait once
        per bot, well past ``shutdown_timeout_s``). False at once when the bus says it cannot do its
        job (its connection problems: the store refuses, the stream is gone): each bot's last report
        would wait ``publish_timeout_s`` for a store that does not take it."""
        problems = self.bus.connection_problems()
        if problems:
            log.warning(
                "stop: the bus cannot settle; the bots stop without waiting for it",
                extra={"after": after, "bus": self.bus.name, "problem": problems[0]},
            )
            return False
        try:
            async with asyncio.timeout(self.config.host.drain_timeout_s):
                await self.bus.settle()
        except TimeoutError:
            log.warning(
                "stop: the bus did not settle in time; the bots left stop without waiting for it",
                extra={"after": after, "bus": self.bus.name},
            )
            return False
        return True

    async def __aenter__(self) -> Host:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- reload -----------------------------------------------------------------------------------

    async def apply(self, loaded: LoadedConfig) -> TopologyDiff:
        """Move to ``loaded``'s topology. Raises ConfigError (and changes nothing) if it is invalid."""
        async with self._apply_lock:
            self.check(loaded)
            diff = diff_topology(self.config, loaded.config, self.placement)
            if self.relay is not None and (not diff.empty or loaded.config.bots != self.config.bots):
                raise ConfigError(
                    f"{loaded.path}: a deterministic run split across hosts keeps the topology it started"
                    " with (every host orders by it): restart the hosts to change it (docs/deploy.md)"
                )
            await self._check_states(loaded, diff)
            if diff.backend_changed:
                await self._switch_backend(loaded)
            else:
                old_host = self.config.host
                self.loaded = loaded
                if diff.host_changed:
                    for runner in self.runners.values():
                        runner.settings = loaded.config.host
                    if old_host.handler_stuck_s != loaded.config.host.handler_stuck_s:
                        self._watch_handlers(loaded.config)
                await self.replicas.open(loaded.config, self.bus, self._placed(loaded.config))
                await self._start_bots(list(diff.added))
                for bot in diff.rewired:
                    if self._replicated(bot):
                        await self._reseat(bot)
                    else:
                        await self.runners[bot.id].wire(bot)
                for bot in diff.restarted:
                    await self._restart_changed(bot)
                for bot_id in diff.removed:
                    await self.runners.pop(bot_id).stop(drain=True)
                    await self.replicas.drop(bot_id)
                    await self.bus.release_bot(bot_id)  # its own NATS connection, if it has one
                if old_host.stop_on != loaded.config.host.stop_on:
                    await self._watch_stop_on()
                else:
                    self._count_stop_on_publishers()
            changes = diff.summary()
            log.info("topology applied", extra={"diff": changes})
            self.plugins.manager.hook.citarion_topology_applied(
                host=self,
                added=changes["added"],
                removed=changes["removed"],
                changed=[*changes["restarted"], *changes["rewired"]],  # type: ignore[misc]
            )
            return diff

    async def _check_states(self, loaded: LoadedConfig, diff: TopologyDiff) -> None:
        """Raise ConfigError (changing nothing) if a bot the reload starts or restarts could not take
        its state: the bot and the field are named; ``reset_state = true`` on the bot starts it fresh."""
        if not loaded.config.state.enabled or diff.backend_changed:
            return
        problems = await self.state.check_added(
            [(bot, self.plugins.resolve(bot.plugin)) for bot in diff.added], loaded
        )
        for bot in diff.restarted:
            file = str(loaded.file_of(bot.id))
            problems += self.state.check_restart(
                self.runners[bot.id], self.plugins.resolve(bot.plugin), bot, file
            )
        if problems:
            raise ConfigError(
                f"{loaded.path}: {len(problems)} bot states the new config cannot take", problems
            )

    def _replicated(self, config: BotConfig) -> bool:
        """Is ``config``'s bot, as it runs now or as it will, a replicated one (``replicas.py``)?"""
        return self.replicas.manages(config) or config.id in self.replicas.replicas

    async def _reseat(self, config: BotConfig) -> None:
        """A reload changed a replicated bot: its instance stops (its last snapshot written), its seat
        is given back, and it contends again with the new config (a standby elsewhere may win)."""
        await self.runners[config.id].stop(drain=True)
        await self.state.keeper.flush()
        await self.replicas.drop(config.id)
        await self._start_bots([config])

    async def _restart_changed(self, config: BotConfig) -> None:
        if self._replicated(config):
            await self._reseat(config)
            return
        runner = self.runners[config.id]
        if runner.config.plugin != config.plugin or runner.config.code != config.code:
            await runner.stop(drain=True)  # its last state goes to the keeper; the new runner takes it
            await self._start_bots([config])
            return
        if not await runner.wire(config):  # the server refused its new subscription: it stays failed
            return
        await runner.restart("definition changed", reset_state=config.reset_state)

    async def _switch_backend(self, loaded: LoadedConfig) -> None:
        """Stop every bot, move the observers to a new bus, start the bots there.

        The bots restart with their state (the snapshots taken at the stop, kept in the process), and
        their counters carry over, so a run's summary covers both buses.
        """
        previous = dict(self.runners)
        await self.stop()
        self.loaded = loaded
        self.bus = create_bus(loaded.config.backend, catalog=self.catalog)
        await self.bus.start()
        await self.state.open(loaded.config, self.bus)  # the snapshots kept in the process carry over
        await self.replicas.open(loaded.config, self.bus, self._placed(loaded.config))
        for observer in self.observers:
            await observer.attach(self.bus)
        await self._watch_stop_on()
        await self._watch_bus()
        await self._start_bots(self._placed(loaded.config), previous)
        self.state.start_timer(self.runners, loaded.config.state.every_s)
        self._watch_handlers(loaded.config)

    async def reload_plugin_code(self, files: Iterable[Path]) -> list[str]:
        """Restart, with freshly imported code, every bot built from a ``module:object`` in ``files``."""
        specs = {spec for file in files for spec in self.plugins.path_specs_from(file)}
        changed = [runner for runner in self.runners.values() if runner.config.plugin in specs]
        fresh = {
            spec: self.plugins.resolve(spec, reimport=True) for spec in {r.config.plugin for r in changed}
        }
        problems: list[Finding] = []
        for runner in changed:
            file = str(self.loaded.file_of(runner.config.id))
            problems += self.state.check_restart(runner, fresh[runner.config.plugin], runner.config, file)
        if problems:  # the running instances keep the old code
            raise CitarionError("; ".join(problem.text for problem in problems))
        restarted = []
        for runner in changed:
            await runner.restart(
                "plugin code changed", retype=self._retype(runner, fresh[runner.config.plugin])
            )
            restarted.append(runner.config.id)
        return restarted

    def _retype(self, runner: BotRunner, bot_type: type[Any]) -> Callable[[], None]:
        """What a restart with new code does between the old instance's last snapshot and the new one."""

        def retype() -> None:
            runner.bot_type = bot_type
            self.state.attach(runner, self.config)
            if runner.checkpoints is not None:
                runner.checkpoints.adopt(self.state.keeper.latest.get(runner.config.id), "process")

        return retype

    # -- completion (``[host] stop_on``) ----------------------------------------------------------

    async def _watch_stop_on(self) -> None:
        topic = self.config.host.stop_on
        self._stop_on_seen.clear()
        if topic is None:
            return
        self._count_stop_on_publishers()
        await self.bus.subscribe(topic, self._stop_on_event, name="host:stop_on")

    def _count_stop_on_publishers(self) -> None:
        topic = self.config.host.stop_on
        self._stop_on_expected = sum(
            1
            for bot in self.config.bots
            if bot.enabled and topic and any(overlaps(p, topic) for p in bot.publish)
        )

    async def _stop_on_event(self, event: Event) -> None:
        payload = event.payload if isinstance(event.payload, dict) else {}
        self._stop_on_seen.add(str(payload.get("feed", event.source)))
        if len(self._stop_on_seen) >= max(self._stop_on_expected, 1):
            self.finished.set()

    # -- health ---------------------------------------------------------------------------------------

    async def _watch_bus(self) -> None:
        """On a bus with a connection to lose, follow its ``system.connection.closed`` report (the bus
        delivers it to this process's subscribers when its connection closed for good)."""
        if self.bus.capabilities.cross_process:
            await self.bus.subscribe(_CONNECTION_CLOSED, self._bus_closed, name="host:health")

    async def _bus_closed(self, event: Event) -> None:
        if self.bus.closed:  # our own close, not the server's
            return
        detail = getattr(event.payload, "detail", None) or "connection closed"
        self.lose(f"bus {self.bus.name!r}: connection closed for good ({detail})")

    def lose(self, reason: str) -> None:
        """The host cannot go on (``reason``): log it, report it once on ``system.host.unready`` (to
        this process's subscribers: the bus may be unable to send it), and set :attr:`lost`."""
        if self.lost.is_set():
            return
        self.lost_reason = reason
        log.error(
            "host not ready for good: stopping", extra={"reason": reason, "host": self.config.host.name}
        )
        try:
            event = self.catalog.make(
                UNREADY_TOPIC,
                {"host": self.config.host.name, "reasons": list(self.health().reasons)},
                source=HOST_SOURCE,
                priority="critical",
            )
            for subscription in self.bus.local_subscribers(event):
                subscription.deliver(event)
        finally:
            self.lost.set()

    def health(self) -> Health:
        """Ready or not, and why (``health.py``): what ``/readyz`` serves."""
        bus = self.bus
        state = "closed" if bus.closed else str(getattr(bus, "connection_state", "connected"))
        connected = state == "connected"  # the memory bus has no connection: connected while open
        reasons = [self.lost_reason] if self.lost_reason else []
        if not self.started:
            reasons.append("the host is not running")
        if not connected:
            reasons.append(f"bus {bus.name!r} not connected ({state})")
        reasons += bus.connection_problems()  # e.g. a bot's own NATS connection (per-bot isolation)
        reasons += self.handler_watch.reasons()
        cascade = bus.sequencer.problem() if bus.sequencer is not None else None
        if cascade is not None:
            reasons.append(cascade)
        waiting = self.relay is not None and self.relay.waiting
        if waiting:
            reasons.append(
                "split run: waiting for the coordinator (the host running the stop_on feeds) to start this"
                " host's bots"
            )
        bots: dict[str, str] = {}
        for bot in self._placed(self.config):
            runner = self.runners.get(bot.id)
            bots[bot.id] = runner.state if runner is not None else "absent"
            if (
                bots[bot.id] not in ("running", "standby")
                and bot.id not in self.stopped_by_operator
                and not waiting
            ):
                reasons.append(f"bot {bot.id!r} is {bots[bot.id]}")
        return Health(not reasons, tuple(reasons), bus.name, connected, bots, self.lost_reason)

    # -- operator controls (the dashboard) ---------------------------------------------------------

    async def stop_bot(self, bot_id: str) -> None:
        """Stop one bot (its backlog drained) and keep it listed as stopped until :meth:`start_bot`.

        Raises KeyError for an unknown bot. The bot stays in the topology: a reload that does not
        change it leaves it stopped; one that changes it starts it again.
        """
        async with self._apply_lock:
            runner = self.runners[bot_id]
            self.stopped_by_operator.add(bot_id)
            if runner.state != "stopped":
                await runner.stop(drain=True)
            if bot_id in self.replicas.replicas:  # its seat goes to a standby elsewhere
                await self.state.keeper.flush()
                await self.replicas.drop(bot_id)

    async def start_bot(self, bot_id: str) -> None:
        """Start a stopped or failed bot again (a fresh instance; its counters carry on)."""
        async with self._apply_lock:
            previous = self.runners[bot_id]
            self.stopped_by_operator.discard(bot_id)
            if previous.state not in ("stopped", "failed"):
                return
            if previous.state == "failed":
                await previous.stop(drain=False)
            runner = self._runner(previous.config)
            runner.carry_over(previous)
            if self.replicas.manages(runner.config):
                self.replicas.enroll(runner)  # it stands by until it wins a seat
                return
            await runner.start()

    async def restart_bot(self, bot_id: str) -> None:
        """Replace a running bot's instance (same subscription, backlog kept); start it if stopped."""
        runner = self.runners[bot_id]
        if runner.state in ("stopped", "failed"):
            await self.start_bot(bot_id)
            return
        if runner.state == "standby":  # no instance to replace: it starts when it wins a seat
            return
        async with self._apply_lock:
            await runner.restart("restarted by an operator")

    def findings(self) -> list[Finding]:
        """The check's findings for the running config (warnings only: errors never start)."""
        if self._wiring is None:
            self._wiring = WiringCheck(self.registry, self.plugins)
        return self._wiring.check(self.loaded)

    # -- reporting --------------------------------------------------------------------------------

    def _state_changed(self, runner: BotRunner, state: State, reason: str | None) -> None:
        level = logging.WARNING if state in ("restarting", "failed") else logging.INFO
        log.log(level, "bot %s", state, extra={"bot": runner.config.id, "reason": reason})
        self.plugins.manager.hook.citarion_bot_state(
            host=self, bot_id=runner.config.id, state=state, reason=reason
        )

    def stats(self) -> dict[str, Any]:
        return {
            "bus": self.bus.stats(),
            "state": self.state.stats(),
            "replicas": self.replicas.stats(),
            "bots": {bot_id: r.stats() for bot_id, r in self.runners.items()},
            "loop": self.loop_watch.stats(),
        }
