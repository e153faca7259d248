"""``citarion-host ask "QUESTION" --config F``: a question to the platform's assistant (ORA).

ORA is a bot of the topology (registry code ``ORA``); it answers requests on
``analytics.query.asked`` with an ``Answer`` on ``analytics.query.answered``. Where the question
goes depends on the config's backend:

* **NATS** (the host runs in another process): a request over the bus; ORA in the running host
  answers from everything it has heard. ``--timeout`` bounds the wait; no ORA running is a clear
  error (no responders).
* **memory** (a run on the in-memory bus leaves no process to ask): the run's record (``[host]
  record``, or ``--record``) is replayed into a fresh instance of the config's ORA, which is handed
  the config's topology, and asked. Same seed, same record, same answer.

``--record`` forces the replay on any backend. Exit codes: 0 answered, 3 refused (ORA could not
answer: the text says why and suggests questions), 1 no ORA / no record / no reply, 2 bad input.

A bot that answers offline may define ``learn(bots)`` to be handed the config's ``[[bots]]``
(the topology) before the replay; ORA does (the host hands it over through a plugin hook).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from .errors import CitarionError
from .events import Event, catalog, decode_event
from .payloads import Answer, Query
from .settings import BotConfig, LoadedConfig

__all__ = ["QUERY_TOPIC", "AskError", "ask_bus", "ask_command", "ask_record", "oracle_of"]

QUERY_TOPIC = "analytics.query.asked"
ANSWER_TOPIC = "analytics.query.answered"


class AskError(CitarionError):
    """The question could not be put (no ORA in the config, no record, no reply)."""


def oracle_of(loaded: LoadedConfig) -> BotConfig:
    """The config's enabled ORA bot."""
    found = [bot for bot in loaded.config.bots if bot.code == "ORA" and bot.enabled]
    if not found:
        raise AskError(f"{loaded.path}: no enabled bot with code ORA: nobody to ask")
    return found[0]


async def ask_record(loaded: LoadedConfig, question: str, record: Path) -> Answer:
    """Replay ``record`` into a fresh instance of the config's ORA and ask it ``question``."""
    from .plugins import Plugins
    from .testing import BotHarness

    oracle = oracle_of(loaded)
    if not record.is_file():
        raise AskError(f"no record at {record}: run the config first (its [host] record), or give --record")
    bot_type = Plugins.discover().resolve(oracle.plugin)
    harness = BotHarness(bot_type, oracle.params, bot_id=oracle.id, code=oracle.code, publish=oracle.publish)
    learn = getattr(harness.bot, "learn", None)
    if callable(learn):
        learn(loaded.config.bots)
    with record.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                event = decode_event(line)
            except Exception as exc:  # a torn last line, an event of a plugin not installed here
                raise AskError(f"{record}:{number}: not an event ({type(exc).__name__}: {exc})") from None
            if event.topic != QUERY_TOPIC:  # earlier questions are not part of the platform's state
                await harness.feed_event(event)
    before = len(harness.published)
    await harness.feed(QUERY_TOPIC, Query(question=question, asker="cli"), source="ASK")
    answers = [e.payload for e in harness.published[before:] if isinstance(e.payload, Answer)]
    if not answers:
        raise AskError(f"{oracle.id} gave no answer")
    return answers[-1]


async def ask_bus(loaded: LoadedConfig, question: str, timeout: float) -> Answer:
    """Ask the running host's ORA over the config's bus (request/reply)."""
    from .bus import create_bus
    from .errors import NoRespondersError, RequestTimeoutError

    oracle_of(loaded)
    request = catalog.make(QUERY_TOPIC, Query(question=question, asker="cli"), source="ASK")
    try:
        async with create_bus(loaded.config.backend) as bus:
            reply: Event = await bus.request(request, timeout=timeout)
    except NoRespondersError:
        raise AskError("no ORA is listening on the bus: is the host running this config?") from None
    except RequestTimeoutError:
        raise AskError(f"no answer within {timeout:g}s: is the host running this config?") from None
    if not isinstance(reply.payload, Answer):
        raise AskError(f"the reply on {reply.topic} is not an answer")
    return reply.payload


def ask_command(
    loaded: LoadedConfig, question: str, *, record: Path | None, timeout: float, as_json: bool
) -> int:
    """What ``citarion-host ask`` does; returns its exit code."""
    try:
        if record is not None or loaded.config.backend.type == "memory":
            where = record or Path(loaded.config.host.record or "")
            if not str(where):
                raise AskError(f"{loaded.path}: a memory run needs [host] record (or --record) to be asked")
            answer = asyncio.run(ask_record(loaded, question, where))
        else:
            answer = asyncio.run(ask_bus(loaded, question, timeout))
    except (AskError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(_wire(answer)))
    else:
        print(answer.text)
    return 0 if answer.answered else 3


def _wire(answer: Answer) -> dict[str, Any]:
    import msgspec

    result: dict[str, Any] = msgspec.to_builtins(answer)
    return result
