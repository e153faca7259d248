"""The hooks a citarion plugin may implement (pluggy project ``citarion``).

A plugin is any module or object with functions marked ``@hookimpl``; it is found through the
entry-point group ``citarion.bots`` or named by a ``module:object`` path in the config. Every hook is
optional. See ``docs/plugins.md`` for a complete minimal plugin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .bot import Bot
    from .payloads import Payload
    from .registry import BotRegistry

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "citarion"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def citarion_bot_types() -> Sequence[type[Bot]]:  # type: ignore[empty-body]
    """Bot classes this plugin provides.

    Each class subclasses :class:`citarion_host.bot.Bot` and sets a unique ``type_name``, which
    configs use as ``plugin = "<type_name>"``.
    """


@hookspec
def citarion_payload_types() -> Mapping[str, type[Payload]]:  # type: ignore[empty-body]
    """Extra payload types: ``{topic pattern: msgspec Struct subclass of Payload}``.

    Events on matching topics are validated and decoded into that type. The most specific pattern
    wins over the built-in ones.
    """


@hookspec
def citarion_domains() -> Sequence[str]:  # type: ignore[empty-body]
    """Extra event domains (first topic token) beyond market, trading, risk, analytics, system."""


@hookspec
def citarion_registry(registry: BotRegistry) -> None:
    """Add bots, categories or rules to the registry before the wiring is checked.

    :param registry: the host's registry; call ``registry.add_category(...)``,
        ``registry.register(...)`` or ``registry.extend_rules(...)``.
    """


@hookspec
def citarion_host_started(host: Any) -> None:
    """The host has started every enabled bot. Observers may subscribe here.

    :param host: the running :class:`citarion_host.host.Host`.
    """


@hookspec
def citarion_topology_applied(
    host: Any, added: Sequence[str], removed: Sequence[str], changed: Sequence[str]
) -> None:
    """A reload was applied.

    :param host: the running host.
    :param added: ids of bots started by this reload.
    :param removed: ids of bots stopped.
    :param changed: ids of bots restarted or rewired.
    """


@hookspec
def citarion_bot_state(host: Any, bot_id: str, state: str, reason: str | None) -> None:
    """A bot changed state: ``started``, ``stopped``, ``restarting``, ``failed``.

    :param host: the running host.
    :param bot_id: the bot instance id.
    :param state: the new state.
    :param reason: why (an error message for ``restarting``/``failed``), else None.
    """


@hookspec
def citarion_host_stopping(host: Any) -> None:
    """The host is about to stop its bots and close the bus.

    :param host: the running host.
    """
