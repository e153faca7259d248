"""What a bot is: a class with an async lifecycle that talks to the world only through its context.

A bot never sees the bus. The host creates it with a :class:`BotContext` (publish within the bot's
declared patterns, a logger, its identity) and its validated params, subscribes it to its declared
patterns, and calls :meth:`Bot.handle` for each event. Keeping the bus out of reach is what lets the
host enforce the wiring, restart a bot without touching the others, and swap backends under it.

A minimal bot::

    class EchoParams(BaseModel):
        prefix: str = ">"

    class Echo(Bot[EchoParams]):
        type_name = "echo"

        async def handle(self, event: Event) -> None:
            await self.ctx.publish("analytics.echo.seen", {"text": f"{self.params.prefix} {event.topic}"})

A bot with state the host keeps across reloads, crashes and host restarts declares it (``docs/state.md``)::

    class Counter(Bot):
        class State(msgspec.Struct):
            count: int = 0

        def __init__(self, ctx, params):
            super().__init__(ctx, params)
            self.count = 0

        async def handle(self, event: Event) -> None:
            self.count += 1
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections.abc import Coroutine, Iterable
from typing import Any, ClassVar, Generic, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

from .errors import PublishNotAllowedError
from .events import Event, Priority
from .state import restore_attributes, snapshot_attributes, state_fields
from .topics import PatternIndex

__all__ = ["Bot", "BotContext", "NoParams", "PublishGuard"]


class NoParams(BaseModel):
    """Params of a bot that takes none (unknown keys are still an error)."""

    model_config = ConfigDict(extra="forbid")


#: A bot's params model (a bare ``Bot`` leaves it untyped: ``Any``).
ParamsT = TypeVar("ParamsT", bound=BaseModel, default=Any)


class PublishGuard:
    """A bot's declared ``publish`` patterns, and the refusal of any topic outside them.

    The host's context and the test harness both use it, so a bot is refused in its tests exactly as
    it would be at run time, with the same message.
    """

    __slots__ = ("_allowed", "bot_id", "patterns")

    def __init__(self, bot_id: str, patterns: Iterable[str]) -> None:
        self.bot_id = bot_id
        self.patterns = tuple(patterns)
        self._allowed: PatternIndex[str] = PatternIndex()
        for pattern in self.patterns:
            self._allowed.add(pattern, pattern)

    def check(self, topic: str) -> None:
        """Return if ``topic`` may be published; raise :class:`PublishNotAllowedError` otherwise."""
        if not self._allowed.match(topic):
            raise PublishNotAllowedError(
                f"bot {self.bot_id!r} may not publish {topic!r}: declared publish patterns are "
                f"{list(self.patterns)} (nothing was sent)"
            )


@runtime_checkable
class BotContext(Protocol):
    """What the host gives a bot. Implemented by the host; a test double lives in ``testing``."""

    @property
    def bot_id(self) -> str:
        """The instance id from the config (``[[bots]] id``)."""
        ...

    @property
    def code(self) -> str:
        """The registry code (``GRD``); used as the ``source`` of published events."""
        ...

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry ``bot`` and ``code``."""
        ...

    async def publish(
        self,
        topic: str,
        payload: Any,
        *,
        priority: Priority = "normal",
        causation_id: str | None = None,
        correlation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Event:
        """Publish an event as this bot.

        While the bot handles an event E, what it publishes carries ``causationId = E.id``,
        E's ``correlationId`` and E's ``metadata.dataTime`` unless given here (``lineage``).

        Raises :class:`~citarion_host.errors.PublishNotAllowedError` (and sends nothing) when
        ``topic`` is outside the bot's declared ``publish`` patterns.
        """
        ...

    async def request(self, topic: str, payload: Any, *, timeout: float = 5.0) -> Event:
        """Publish a request and wait for its reply (see ``EventBus.request``)."""
        ...

    async def reply(self, request: Event, topic: str, payload: Any) -> Event:
        """Answer ``request`` with an event on ``topic``."""
        ...

    def spawn(self, work: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        """Run background work (a data feed) under supervision: if it raises, the bot restarts;
        it is cancelled when the bot stops."""
        ...

    async def settle(self, *, lag: bool = False) -> None:
        """Wait until everything published so far has been handled everywhere, in deterministic mode
        (``[backend] deterministic``); otherwise let the other tasks run once. Never from ``handle``.

        ``lag=True``: wait only for what was published before this bot's ``settle(lag=True)`` two calls
        back, with everything it caused. A replayed feed calls that before each new bar: the bars
        before the last two are done, and the one before them is being handled, so two bars wait
        queued instead of the platform idling at every bar boundary (on JetStream, a store round trip
        per bar, and another whenever a bar's cascade was shorter than its successor's way to the
        store). The
        order of handling is the same either way: the sequencer handles an event from outside only
        after the consequences of the ones before it."""
        ...


class Bot(Generic[ParamsT]):
    """Base class for bots. Override what you need; every method has a do-nothing default.

    Generic in its params model: ``class Grid(Bot[GridParams])`` declares the model once, and
    ``self.params`` is typed as ``GridParams`` (``Params`` is set from the type argument).

    Class attributes:

    * ``type_name`` — how configs refer to this bot type (``plugin = "grid"``).
    * ``Params`` — the pydantic model validating the bot's ``[bots.params]`` table (from the type
      argument; set it explicitly only on a bot written without one).
    * ``description`` — one line for ``citarion-host bots``.
    * ``State`` — the bot's state as a msgspec Struct or pydantic model whose fields name attributes of
      the bot; the host snapshots and restores them (``docs/state.md``). None: the bot keeps no state
      (unless it overrides :meth:`snapshot`).
    * ``state_version`` — raise it when ``State`` changes in a way old snapshots do not fit, and
      convert them in :meth:`migrate_state`.
    """

    type_name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    description: ClassVar[str] = ""
    State: ClassVar[type[Any] | None] = None
    state_version: ClassVar[int] = 1

    def __init__(self, ctx: BotContext, params: ParamsT) -> None:
        self.ctx = ctx
        self.params: ParamsT = params

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Params" in cls.__dict__:
            return
        for base in getattr(cls, "__orig_bases__", ()):
            args = typing.get_args(base)
            origin = typing.get_origin(base)
            if args and isinstance(origin, type) and issubclass(origin, Bot):
                model = args[0]
                if isinstance(model, type) and issubclass(model, BaseModel):
                    cls.Params = model
                return

    async def start(self) -> None:
        """Called once before the first event. Start background work here (e.g. a data feed)."""

    async def handle(self, event: Event) -> None:
        """Called for each event matching the bot's ``subscribe`` patterns, in order."""

    async def stop(self) -> None:
        """Called on shutdown, removal or restart, after the bot's queued events are drained."""

    def stats(self) -> dict[str, Any]:
        """Figures for the run summary (signals, orders, PnL...). Default: none."""
        return {}

    # -- state (docs/state.md) ----------------------------------------------------------------------

    @classmethod
    def keeps_state(cls) -> bool:
        """True if the host should snapshot this bot: it declares ``State`` or overrides :meth:`snapshot`."""
        return cls.State is not None or cls.snapshot is not Bot.snapshot

    def snapshot(self) -> Any:
        """The bot's state now, between two events: an instance of ``State``, a mapping of its fields,
        plain JSON data or bytes. Default: the attributes named like ``State``'s fields.

        Called synchronously right after a handled event (never while one is being handled), so the
        state is consistent with the inbox position the host records with it; the value is encoded
        at once, so the bot may go on mutating what it returned."""
        if self.State is None:
            return None
        return snapshot_attributes(self, state_fields(self.State))

    def restore(self, state: Any) -> None:
        """Take back a stored state (called after ``__init__``, before :meth:`start`). ``state`` is an
        instance of ``State`` (migrated and checked), or the JSON data / bytes a custom
        :meth:`snapshot` gave. Default: set each attribute named like a field of ``State``."""
        if self.State is not None:
            restore_attributes(self, state, state_fields(self.State))

    @classmethod
    def migrate_state(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
        """Convert a stored state written at ``from_version`` (< ``state_version``) to the current
        ``State``, as JSON data: rename, add or drop keys. Default: unchanged (the state is then checked
        against ``State``; fields with defaults may be missing, unknown keys are ignored)."""
        return data
