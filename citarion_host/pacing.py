"""``citarion-host run --speed X``: replay the feeds at X times their data's pace, to watch a run live.

A replayed feed goes as fast as the platform does (``speed = 0``: a demo is over in a second). With
``--speed 600`` a one-minute bar comes every 0.1 s, so a 500-bar replay takes under a minute: slow
enough to follow on the dashboard. The option sets the ``speed`` param of every enabled feed (a bot
that publishes and subscribes to nothing) whose params model has one; a config without such a feed
is refused with one line, not ignored.
"""

from __future__ import annotations

from dataclasses import replace

from .errors import ConfigError
from .findings import Finding
from .plugins import PluginError, Plugins
from .settings import LoadedConfig

__all__ = ["pace_feeds"]


def pace_feeds(loaded: LoadedConfig, speed: float, plugins: Plugins) -> LoadedConfig:
    """``loaded`` with ``params.speed = speed`` on every feed that takes it; ConfigError if none does."""
    bots, paced = [], []
    for bot in loaded.config.bots:
        if bot.enabled and not bot.subscribe and bot.publish and _takes_speed(bot.plugin, plugins):
            bot = bot.model_copy(update={"params": {**bot.params, "speed": speed}})
            paced.append(bot.id)
        bots.append(bot)
    if not paced:
        raise ConfigError.of(
            Finding(
                "error",
                str(loaded.path),
                None,
                "",
                "--speed: no enabled feed of this config has a 'speed' param",
            )
        )
    return replace(loaded, config=loaded.config.model_copy(update={"bots": bots}))


def _takes_speed(plugin: str, plugins: Plugins) -> bool:
    try:
        bot_type = plugins.resolve(plugin)
    except (PluginError, LookupError):
        return False  # the check reports it
    return "speed" in bot_type.Params.model_fields
