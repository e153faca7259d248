"""The host's side of bot state: which store, which bots keep state, loading and checking, the timer.

One :class:`HostState` per host. It owns the :class:`~citarion_host.statestore.StateKeeper` (the latest
snapshot of every bot, kept across reloads and backend switches), opens the store the config asks for
on the current bus, gives each stateful bot's runner its
:class:`~citarion_host.checkpoint.Checkpoints`, loads and checks stored states before bots start (a
state that does not fit refuses the start or the reload, naming the bot and the field), and snapshots
idle bots every ``[state] every_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from .bus import EventBus
from .checkpoint import Checkpoints
from .errors import ConfigError, StateError
from .findings import Finding
from .settings import BotConfig, HostConfig, LoadedConfig
from .state import decode_snapshot, state_spec
from .statestore import DirStore, StateKeeper, StateStore
from .supervisor import BotRunner

__all__ = ["HostState", "open_store", "store_kind"]

log = logging.getLogger("citarion_host.state")


def store_kind(config: HostConfig) -> str:
    """``kv``, ``dir`` or ``process``: where ``config`` keeps bot state (``[state] store``)."""
    state, backend = config.state, config.backend
    if state.store != "auto":
        return state.store
    if backend.type == "nats" and backend.nats.jetstream:
        return "kv"
    return "dir" if state.dir else "process"


async def open_store(config: HostConfig, bus: EventBus | None) -> StateStore | None:
    """The persistent store of ``config`` (None: the process only); ``kv`` needs the started NATS bus."""
    kind = store_kind(config)
    if kind == "dir":
        assert config.state.dir is not None  # the settings refuse store = "dir" without a dir
        store = DirStore(config.state.dir)
        await asyncio.to_thread(store.check)  # refused now, not after a run that kept nothing
        return store
    if kind == "kv":
        from .bus.nats import NatsBus  # lazily: the memory backend never needs nats-py
        from .statekv import open_kv_store

        if not isinstance(bus, NatsBus):
            raise StateError('[state] store = "kv" needs the NATS JetStream backend')
        return await open_kv_store(bus.nc, config.backend.nats, config.state.bucket)
    return None


def stream_of(config: HostConfig) -> str | None:
    """The stream whose sequences are a bot's positions (None: no stored positions on this backend)."""
    backend = config.backend
    return backend.nats.stream if backend.type == "nats" and backend.nats.jetstream else None


class HostState:
    """Bot state for one host (see the module docstring)."""

    def __init__(self) -> None:
        self.keeper = StateKeeper()
        self._ticker: asyncio.Task[None] | None = None

    async def open(self, config: HostConfig, bus: EventBus) -> None:
        """Use the store ``config`` asks for on ``bus`` (the snapshots already kept stay)."""
        store = await open_store(config, bus) if config.state.enabled else None
        await self.keeper.replace_store(store)
        log.info("bot state store", extra={"store": self.keeper.where, "enabled": config.state.enabled})

    def attach(self, runner: BotRunner, config: HostConfig) -> None:
        """Give ``runner`` its checkpoints if its bot keeps state (and state is enabled)."""
        runner.checkpoints = None
        keeps = getattr(runner.bot_type, "keeps_state", None)
        if not config.state.enabled or keeps is None or not keeps():
            return
        spec = state_spec(runner.bot_type)
        runner.checkpoints = Checkpoints(
            runner.config.id, runner.bot_type, spec, self.keeper, config.state, stream_of(config)
        )

    async def load(self, runners: Iterable[BotRunner], loaded: LoadedConfig) -> None:
        """Give each stateful runner its stored snapshot, checked against its bot type; raise
        :class:`ConfigError` listing every state that does not fit (nothing is changed then)."""
        problems: list[Finding] = []
        plans: list[tuple[BotRunner, Any, str]] = []
        for runner in runners:
            checkpoints = runner.checkpoints
            if checkpoints is None:
                continue
            bot_id = runner.config.id
            if runner.config.reset_state:
                plans.append((runner, None, "reset"))
                continue
            try:
                snapshot, source = await self.keeper.load(bot_id)
                if snapshot is not None:
                    decode_snapshot(snapshot, checkpoints.spec, runner.bot_type)
                plans.append((runner, snapshot, source))
            except StateError as exc:
                problems.append(Finding("error", str(loaded.file_of(bot_id)), bot_id, "state", str(exc)))
        if problems:
            raise ConfigError(f"{loaded.path}: {len(problems)} stored bot states refused", problems)
        for runner, snapshot, source in plans:
            assert runner.checkpoints is not None
            if source == "reset":
                await self.keeper.forget(runner.config.id)
                log.warning(
                    "bot state reset (reset_state = true): it starts fresh", extra={"bot": runner.config.id}
                )
            runner.checkpoints.adopt(snapshot, source)
            if snapshot is not None:
                log.info(
                    "bot state restored",
                    extra={
                        "bot": runner.config.id,
                        "source": source,
                        "handled": snapshot.handled,
                        "seq": snapshot.seq,
                        "version": snapshot.version,
                    },
                )

    def check_restart(
        self, runner: BotRunner, bot_type: type[Any], config: BotConfig, file: str
    ) -> list[Finding]:
        """Can ``bot_type`` (new code, new params) take ``runner``'s state? Findings if not."""
        if config.reset_state or runner.checkpoints is None or runner.checkpoints.latest is None:
            return []
        keeps = getattr(bot_type, "keeps_state", None)
        if keeps is None or not keeps():
            return []
        try:
            spec = state_spec(bot_type)
            decode_snapshot(runner.checkpoints.latest, spec, bot_type)
        except StateError as exc:
            return [Finding("error", file, config.id, "state", str(exc))]
        return []

    async def check_added(
        self, configs: Iterable[tuple[BotConfig, type[Any]]], loaded: LoadedConfig
    ) -> list[Finding]:
        """Stored states of bots a reload adds (a bot removed earlier and back): do they fit?"""
        problems = []
        for config, bot_type in configs:
            keeps = getattr(bot_type, "keeps_state", None)
            if config.reset_state or keeps is None or not keeps():
                continue
            try:
                snapshot, _ = await self.keeper.load(config.id)
                if snapshot is not None:
                    spec = state_spec(bot_type)
                    decode_snapshot(snapshot, spec, bot_type)
            except StateError as exc:
                problems.append(
                    Finding("error", str(loaded.file_of(config.id)), config.id, "state", str(exc))
                )
        return problems

    # -- the every_s timer --------------------------------------------------------------------------

    def start_timer(self, runners: dict[str, BotRunner], every_s: float) -> None:
        self.stop_timer()
        self._ticker = asyncio.get_running_loop().create_task(
            self._tick(runners, every_s), name="state-timer"
        )

    def stop_timer(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()

    @staticmethod
    async def _tick(runners: dict[str, BotRunner], every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            for runner in list(runners.values()):
                try:
                    runner.snapshot_if_due()
                except Exception:  # a bug must not end the timer: logged, the next tick tries again
                    log.exception("state timer failed", extra={"bot": runner.config.id})

    async def close(self) -> None:
        """Stop the timer, write what is pending, release the store (the snapshots stay in the process)."""
        self.stop_timer()
        with contextlib.suppress(asyncio.CancelledError):
            await self.keeper.replace_store(None)

    def stats(self) -> dict[str, object]:
        return self.keeper.stats()
