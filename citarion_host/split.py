"""A deterministic run split across host processes: which host orders it, and how the host takes part.

``run --only/--except`` runs part of a topology; the other parts run in other processes on the same
NATS JetStream. In deterministic mode (``[backend] deterministic``, the default) the run must give the
figures one process would, so one host orders the whole topology (``bus/nats/relay.py`` says how):

* the **coordinator** is the host running every ``[host] stop_on`` publisher (the feeds: what the run
  is made of comes from them, and the run ends when they say so);
* every other host is a **follower**: it wires its bots, then starts, feeds and stops them when the
  coordinator says, and finishes when the coordinator ends the run (not on ``stop_on`` itself, which
  would stop its bots while the coordinator still has turns for them).

Without ``stop_on`` there is no run to order (a live topology, or one that runs until stopped): each
host then sequences its own bots only, which ``check``-style logging says once at start. The feeds
split over two hosts have no single order, nor do bots with ``replicas`` (which instance handles an
event is the server's choice): both refused with a :class:`ConfigError`.
"""

from __future__ import annotations

import logging
from typing import Literal

from .bus import EventBus
from .errors import ConfigError
from .settings import BotConfig, LoadedConfig
from .topics import overlaps
from .topology import Placement

__all__ = ["Role", "split_role", "stop_on_publishers"]

log = logging.getLogger("citarion_host.split")

Role = Literal["coordinator", "follower"]


def stop_on_publishers(bots: list[BotConfig], topic: str | None) -> list[BotConfig]:
    """The enabled bots that may publish ``topic`` (the feeds whose completion ends the run)."""
    if not topic:
        return []
    return [bot for bot in bots if bot.enabled and any(overlaps(p, topic) for p in bot.publish)]


def split_role(loaded: LoadedConfig, placement: Placement, bus: EventBus) -> Role | None:
    """This host's part in ordering a split deterministic run (None: no split, or nothing to order)."""
    config = loaded.config
    capabilities = bus.capabilities
    if not (bus.deterministic and capabilities.cross_process and capabilities.persistent):
        return None
    enabled = [bot for bot in config.bots if bot.enabled]
    if all(placement.runs(bot.id) for bot in enabled):
        return None
    feeds = stop_on_publishers(enabled, config.host.stop_on)
    if not feeds:
        log.warning(
            "deterministic run split across hosts without [host] stop_on: each host orders only its own"
            " bots, so the run is not reproducible (set stop_on, or deterministic = false)",
            extra={"config": str(loaded.path)},
        )
        return None
    here = [bot.id for bot in feeds if placement.runs(bot.id)]
    if here and len(here) < len(feeds):
        elsewhere = [bot.id for bot in feeds if not placement.runs(bot.id)]
        raise ConfigError(
            f"{loaded.path}: a deterministic run split across hosts is ordered by the host running every"
            f" [host] stop_on publisher: this host runs {here} but not {elsewhere} (run them together,"
            " or set [backend] deterministic = false)"
        )
    replicated = [bot.id for bot in enabled if bot.replicas > 1]
    if replicated:
        raise ConfigError(
            f"{loaded.path}: bots {replicated} have replicas, which a deterministic run split across hosts"
            " cannot order (which instance handles an event is the server's choice, and a takeover moves"
            " a bot between hosts): set [backend] deterministic = false for a split run with replicas"
        )
    return "coordinator" if here else "follower"
