"""One bot's state bookkeeping inside its runner: when to snapshot, what the state covers, what to replay.

The runner tells :class:`Checkpoints` about every event it applied to the bot (:meth:`applied`); every
``[state] every_events`` events, or ``every_s`` seconds, the bot is snapshotted right there, between two
events, and the snapshot records the position of the last event applied: its stream sequence on
JetStream (``delivery_position()``), its id everywhere.

The events applied since the last snapshot are kept (the *journal*, at most ``every_events`` of them),
so a crash restart loses nothing: the new instance gets the last snapshot and the journal is handled
again, its outputs not published a second time. See ``docs/state.md``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

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
        #: Events applied since :attr:`latest`, with their stream sequence: replayed after a crash.
        self.journal: list[tuple[Event, int | None]] = []
        #: Events applied to the state in total, and the position of the last one.
        self.handled = 0
        self.seq: int | None = None
        self.event_id: str | None = None
        #: Events up to this stream sequence were handled (and their outputs published) by an earlier
        #: run: handled again to rebuild the state, their outputs are not published again.
        self.replay_until = 0
        self.taken = 0
        self.failures = 0
        self.replayed = 0
        self.restored = 0
        self._due = time.monotonic() + settings.every_s

    # -- loading --------------------------------------------------------------------------------------

    def adopt(self, snapshot: Snapshot | None, source: str) -> None:
        """Start from ``snapshot`` (loaded from the keeper); its position is the state's position."""
        self.latest, self.source = snapshot, source
        self.journal.clear()
        if snapshot is None:
            return
        self.handled = snapshot.handled
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

    def applied(self, bot: Any, event: Event, seq: int | None) -> None:
        """``event`` (at stream sequence ``seq``) was applied to ``bot``: journal it, snapshot if due."""
        self.handled += 1
        self.event_id = event.id
        if seq is not None:
            self.seq = seq
        self.journal.append((event, seq))
        if len(self.journal) >= self.settings.every_events or time.monotonic() >= self._due:
            self.take(bot)

    def take(self, bot: Any) -> Snapshot | None:
        """Snapshot ``bot`` now (between two events) and hand it to the keeper; None if it failed
        (logged and counted: the journal is kept, so a crash restart still loses nothing)."""
        self._due = time.monotonic() + self.settings.every_s
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
        except StateError as exc:
            self.failures += 1
            log.error("bot state snapshot failed", extra={"bot": self.bot_id, "error": str(exc)})
            return None
        except Exception as exc:  # the bot's own snapshot() raised
            self.failures += 1
            log.error(
                "bot state snapshot failed",
                extra={"bot": self.bot_id, "error": f"snapshot() raised {type(exc).__name__}: {exc}"},
            )
            return None
        self.latest = snapshot
        self.journal.clear()
        self.taken += 1
        self.keeper.put(snapshot, data)
        return snapshot

    def due(self) -> bool:
        """A snapshot is owed: events applied since the last one, and ``every_s`` has passed."""
        return bool(self.journal) and time.monotonic() >= self._due

    def reset(self) -> None:
        """Forget everything (``reset_state``): the bot starts fresh, positions included."""
        self.latest, self.source = None, None
        self.journal.clear()
        self.handled, self.seq, self.event_id, self.replay_until = 0, None, None, 0

    def stats(self) -> dict[str, Any]:
        return {
            "snapshots": self.taken,
            "handled": self.handled,
            "seq": self.seq,
            "event_id": self.event_id,
            "journal": len(self.journal),
            "restored": self.restored,
            "replayed": self.replayed,
            "failures": self.failures,
            "source": self.source,
        }
