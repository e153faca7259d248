"""What changes between two configurations, bot by bot: the plan a reload applies.

The classification decides what a reload may leave running:

* **added** / **removed** — new ids (or newly enabled) / ids gone (or disabled);
* **restarted** — the bot's definition changed (``code``, ``plugin``, ``params``, ``reset_state``,
  ``replicas``): a new instance (which takes over its state, unless ``reset_state`` says to start fresh;
  a replicated bot gives its seat back and contends again);
* **rewired** — only its wiring changed (``publish``, ``subscribe``, ``queue``, ``durable``,
  ``max_pending``): subscriptions and the publish allow-list are updated in place, no restart;
* **unchanged** — untouched: keeps running and loses no event.

A backend change rewires everything (``backend_changed``).

A host may run only part of a topology (:class:`Placement`, ``citarion-host run --only/--except``):
the whole config is still checked (the wiring is one platform's), but a reload compares, starts and
stops only the bots placed on this host.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .settings import BotConfig, HostConfig

__all__ = ["Placement", "TopologyDiff", "diff_topology"]


@dataclass(frozen=True)
class Placement:
    """Which bots of a topology this host runs: ``only`` these (None: all), except ``excluded``."""

    only: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()

    @classmethod
    def of(cls, only: Iterable[str] | None = None, excluded: Iterable[str] = ()) -> Placement:
        return cls(None if only is None else frozenset(only), frozenset(excluded))

    def runs(self, bot_id: str) -> bool:
        return (self.only is None or bot_id in self.only) and bot_id not in self.excluded

    def unknown(self, config: HostConfig) -> list[str]:
        """Ids named here that are not bots of ``config`` (a typo would run nothing, silently)."""
        ids = {bot.id for bot in config.bots}
        return sorted(i for i in (self.only or frozenset()) | self.excluded if i not in ids)


_DEFINITION = ("code", "plugin", "params", "reset_state", "replicas")
_WIRING = ("publish", "subscribe", "queue", "durable", "max_pending")


@dataclass(frozen=True)
class TopologyDiff:
    added: tuple[BotConfig, ...] = ()
    removed: tuple[str, ...] = ()
    restarted: tuple[BotConfig, ...] = ()
    rewired: tuple[BotConfig, ...] = ()
    unchanged: tuple[str, ...] = ()
    backend_changed: bool = False
    host_changed: bool = False

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.restarted or self.rewired or self.backend_changed)

    def summary(self) -> dict[str, list[str] | bool]:
        return {
            "added": [b.id for b in self.added],
            "removed": list(self.removed),
            "restarted": [b.id for b in self.restarted],
            "rewired": [b.id for b in self.rewired],
            "unchanged": list(self.unchanged),
            "backend_changed": self.backend_changed,
        }


def diff_topology(old: HostConfig, new: HostConfig, placement: Placement = Placement()) -> TopologyDiff:
    """Compare the enabled bots placed on this host, by id."""
    before = {bot.id: bot for bot in old.bots if bot.enabled and placement.runs(bot.id)}
    after = {bot.id: bot for bot in new.bots if bot.enabled and placement.runs(bot.id)}
    added, restarted, rewired, unchanged = [], [], [], []
    for bot_id, bot in after.items():
        previous = before.get(bot_id)
        if previous is None:
            added.append(bot)
        elif _differs(previous, bot, _DEFINITION):
            restarted.append(bot)
        elif _differs(previous, bot, _WIRING):
            rewired.append(bot)
        else:
            unchanged.append(bot_id)
    return TopologyDiff(
        added=tuple(added),
        removed=tuple(bot_id for bot_id in before if bot_id not in after),
        restarted=tuple(restarted),
        rewired=tuple(rewired),
        unchanged=tuple(unchanged),
        backend_changed=old.backend != new.backend or old.state != new.state or old.replicas != new.replicas,
        host_changed=old.host != new.host,
    )


def _differs(first: BotConfig, second: BotConfig, fields: tuple[str, ...]) -> bool:
    return any(getattr(first, name) != getattr(second, name) for name in fields)
