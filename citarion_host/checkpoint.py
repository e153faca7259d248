"""One bot's state bookkeeping inside its runner: when to snapshot, what the state covers, what to replay.

The runner tells :class:`Checkpoints` about every event it applied to the bot (:meth:`applied`); every
``[state] every_events`` events the bot is snapshotted right there, between two events (and the host's
``every_s`` timer snapshots it when it is idle), and the snapshot records the position of the last
event applied: its stream sequence on JetStream (``delivery_position()``), its id everywhere. The
sequence is parsed from the delivery only when a snapshot needs it (parsing a JetStream message's
metadata costs more than the rest of the bookkeeping): the runner keeps what finds the delivery's
position (:func:`~citarion_host.bus.position_finder`, a context variable read) in :attr:`where`, and a
snapshot calls it.

A snapshot's cost grows with the state (an exchange's books and price history, ORA's index), and
taking one every ``every_events`` events would make a large state cost more than the events
themselves. So each snapshot is timed, and the next one by count waits until ``cost / max_share``
seconds have passed (the ``every_s`` timer waits for it too): snapshots take at most ``[state]
max_share`` of the time, whatever the state's size; a small state is still snapshotted every
``every_events`` events. :meth:`applied` is on every event's path and does no more than keep the event
and compare a length.

The events applied since the last snapshot are kept (the *journal*: ``every_events`` of them, more while
a large state's snapshot is spaced out), so a crash restart loses nothing: the new instance gets the
last snapshot and the journal is handled again, its outputs not published a second time. See
``docs/state.md``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .bus import PositionFinder
from .errors import StateError
from .events import Event
from .settings import StateSettings
from .state import Snapshot, StateSpec, decode_snapshot, encode_snapshot
from .statestore import StateKeeper

__all__ = ["Checkpoints"]

log = logging.getLogger("citarion_host.state")


class Checkpoints:
    """Snapshots of one bot (by id): cadence, covered position, journal, restore."""

    def __init__(
        self,
        bot_id: str,
        bot_type: type[Any],
        spec: StateSpec,
        keeper: StateKeeper,
        settings: StateSettings,
        stream: str | None,
    ) -> None:
        self.bot_id = bot_id
        self.bot_type = bot_type
        self.spec = spec
        self.keeper = keeper
        self.settings = settings
        #: The stream positions are read from (None: not JetStream); a snapshot of another is no position.
        self.stream = stream
        #: The latest snapshot (taken or loaded): what a (re)started instance gets.
        self.latest: Snapshot | None = None
        #: Where :attr:`latest` came from when it was loaded (``process``, ``kv <bucket>``, ``dir <path>``).
        self.source: str | None = None
        #: Events applied since :attr:`latest`: replayed after a crash.
        self.journal: list[Event] = []
        #: Events applied to the state in total up to :attr:`latest` (:attr:`handled` adds the journal),
        #: and the position of the last one.
        self.covered = 0
        self.seq: int | None = None
        self.event_id: str | None = None
        #: Events up to this stream sequence were handled (and their outputs published) by an earlier
        #: run: handled again to rebuild the state, their outputs are not published again.
        self.replay_until = 0
        self.taken = 0
        self.failures = 0
        self.replayed = 0
        self.restored = 0
        #: Seconds the last snapshot took (timed), and when the next one by count may be taken.
        self.cost = 0.0
        self._spaced_until = 0.0
        #: What finds the stream position of the last event applied (None: no position, or read already).
        self.where: PositionFinder | None = None
        #: The journal's length from which an applied event looks at the cadence (:meth:`cadence`).
        self.check_at = settings.every_events
        self._due = time.monotonic() + settings.every_s

    # -- loading --------------------------------------------------------------------------------------

    def adopt(self, snapshot: Snapshot | None, source: str) -> None:
        """Start from ``snapshot`` (loaded from the keeper); its position is the state's position."""
        self.latest, self.source = snapshot, source
        self.journal.clear()
        if snapshot is None:
            return
        self.covered = snapshot.handled
        self.event_id = snapshot.event_id
        self.seq = snapshot.seq if snapshot.stream is not None and snapshot.stream == self.stream else None

    def check(self, bot_type: type[Any], spec: StateSpec) -> None:
        """Raise :class:`StateError` (bot and field named) if ``bot_type`` cannot take :attr:`latest`."""
        if self.latest is not None:
            decode_snapshot(self.latest, spec, bot_type)

    def resume_after(self) -> int | None:
        """The stream sequence the state covers (its subscription resumes right after it), if any."""
        return self.seq

    # -- the running bot --------------------------------------------------------------------------

    def restore(self, bot: Any) -> None:
        """Give a new instance the latest snapshot (migrated when it is older), if there is one."""
        snapshot = self.latest
        if snapshot is None:
            return
        state = decode_snapshot(snapshot, self.spec, self.bot_type)
        bot.restore(state)
        self.restored += 1
        if snapshot.version != self.spec.version:
            log.info(
                "bot state migrated",
                extra={"bot": self.bot_id, "from_version": snapshot.version, "to_version": self.spec.version},
            )

    @property
    def handled(self) -> int:
        """Events applied to this state since the bot first started (across restarts)."""
        return self.covered + len(self.journal)

    def applied(self, bot: Any, event: Event, where: PositionFinder | None) -> None:
        """``event`` was applied to ``bot`` (``where``: what finds its delivery's position, on a bus whose
        deliveries have one): journal it, snapshot if due (every ``every_events`` events, spaced by the
        snapshot's own cost; see the module docstring). On every event's path, so the runner does this
        inline: append to :attr:`journal`, set :attr:`where`, and call :meth:`cadence` only when the
        journal reached :attr:`check_at`."""
        journal = self.journal
        journal.append(event)
        if where is not None:
            self.where = where
        if len(journal) >= self.check_at:
            self.cadence(bot)

    def cadence(self, bot: Any) -> None:
        """After :meth:`applied`'s append, once the journal reached :attr:`check_at`: snapshot if due. A
        snapshot deferred by its spacing is looked at again 64 events on."""
        journal = self.journal
        if len(journal) >= self.check_at:
            if time.monotonic() >= self._spaced_until:
                self.take(bot)
            else:
                self.check_at = len(journal) + 64

    def take(self, bot: Any) -> Snapshot | None:
        """Snapshot ``bot`` now (between two events) and hand it to the keeper; None if it failed
        (logged and counted: the journal is kept, so a crash restart still loses nothing; tried again
        after ``every_s``)."""
        started = time.perf_counter()
        if self.journal:
            self.event_id = self.journal[-1].id
        where, self.where = self.where, None
        if where is not None:  # the stream sequence of the last event applied, read now
            self.seq = where()
        try:
            snapshot, data = encode_snapshot(
                self.bot_id,
                self.spec,
                bot.snapshot(),
                handled=self.handled,
                seq=self.seq,
                stream=self.stream if self.seq is not None else None,
                event_id=self.event_id,
            )
        except Exception as exc:  # StateError: not plain data; anything else: the bot's snapshot() raised
            self.failures += 1
            error = str(exc)
            if not isinstance(exc, StateError):
                error = f"snapshot() raised {type(exc).__name__}: {exc}"
            log.error("bot state snapshot failed", extra={"bot": self.bot_id, "error": error})
            self._due = self._spaced_until = time.monotonic() + self.settings.every_s
            return None
        self.latest = snapshot
        self.covered += len(self.journal)
        self.journal.clear()
        self.check_at = self.settings.every_events
        self.taken += 1
        self.keeper.put(snapshot, data)
        now = time.monotonic()
        self.cost = time.perf_counter() - started
        self._due = now + self.settings.every_s
        self._spaced_until = now + self.cost / self.settings.max_share
        return snapshot

    def due(self) -> bool:
        """A snapshot is owed: events applied since the last one, ``every_s`` has passed, and so has the
        spacing the last snapshot's cost asks for."""
        return bool(self.journal) and time.monotonic() >= max(self._due, self._spaced_until)

    def reset(self) -> None:
        """Forget everything (``reset_state``): the bot starts fresh, positions included."""
        self.latest, self.source = None, None
        self.journal.clear()
        self.covered, self.seq, self.event_id, self.replay_until = 0, None, None, 0
        self.where = None

    def stats(self) -> dict[str, Any]:
        return {
            "snapshots": self.taken,
            "snapshot_us": round(self.cost * 1e6, 1),
            "handled": self.handled,
            "seq": self.seq,
            "event_id": self.journal[-1].id if self.journal else self.event_id,
            "journal": len(self.journal),
            "restored": self.restored,
            "replayed": self.replayed,
            "failures": self.failures,
            "source": self.source,
        }
