"""citarion-host: CITARION's trading bots as plugins, wired over an event bus."""

__version__ = "0.1.0"
