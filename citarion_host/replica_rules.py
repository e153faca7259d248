"""What ``check`` says about a bot's ``replicas``: where sharing a bot across processes cannot work.

``replicas`` > 1 relies on two things only NATS JetStream has: a durable consumer the instances share
(so an event is handled by one of them, and one a dead instance held comes back to a live one) and a
key-value bucket for the leases (which instance holds a seat) and, for a bot with state, for the state
a standby takes over. Everything else is a config that would run but not do what ``replicas`` says;
the rules here name it before a host starts (``docs/deploy.md``, "Replicas and standbys").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .findings import Severity
from .settings import BotConfig, HostConfig

__all__ = ["replica_problems"]


def _keeps_state(bot_type: type[Any] | str) -> bool:
    keeps = getattr(bot_type, "keeps_state", None) if not isinstance(bot_type, str) else None
    return bool(keeps is not None and keeps())


def replica_problems(
    config: HostConfig, bot: BotConfig, bot_type: type[Any] | str
) -> Iterator[tuple[Severity, str]]:
    """``(severity, message)`` for the ``replicas`` key of ``bot`` (nothing when it is 1)."""
    if bot.replicas <= 1:
        return
    backend = config.backend
    if backend.type != "nats":
        yield (
            "warning",
            "replicas has no effect on the in-memory bus: it lives in one process, where a bot runs once"
            " (replicas share a bot across host processes on NATS JetStream)",
        )
        return
    if not backend.nats.jetstream:
        yield (
            "error",
            "replicas needs JetStream ([backend.nats] jetstream = true): the instances share a durable"
            " consumer and hold their seats as leases in a key-value bucket",
        )
        return
    if not bot.durable:
        yield (
            "error",
            "replicas needs durable = true: the instances share the bot's durable consumer (without it"
            " each instance would get every event, and a dead one's events would be lost)",
        )
    stateful = _keeps_state(bot_type)
    if not stateful:
        return
    if bot.queue is not None:
        yield (
            "error",
            f"a bot that keeps state runs one active instance: it cannot share queue group {bot.queue!r}"
            " (leave queue out; its standbys take over its own durable consumer)",
        )
    state = config.state
    if not state.enabled:
        yield ("warning", "[state] enabled = false: a standby that takes over starts the bot fresh")
    elif state.store == "process":
        yield (
            "error",
            '[state] store = "process": a standby in another process cannot read the state it takes'
            ' over; use the key-value store (store = "auto" or "kv")',
        )
    elif state.store == "dir":
        yield (
            "warning",
            '[state] store = "dir": a standby restores the state from its own directory; only a'
            ' directory every host shares works (the key-value store, store = "kv", does)',
        )
