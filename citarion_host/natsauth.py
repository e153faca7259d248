"""Who may use which NATS subjects: the server-side twin of the host's wiring rules.

The host already refuses a bot's publish outside its declared patterns (``bot.PublishGuard``), but only
inside the process: code that reaches the host's bus object bypasses it. Here the same declarations
become per-user permissions that ``nats-server`` itself enforces, default deny: each bot is a NATS user
that may publish and subscribe exactly

* its declared ``publish`` / ``subscribe`` patterns (the events themselves);
* ``_CIT.responders.<pattern>`` for each of them (the no-responders probe of request/reply: the
  requester publishes on ``<its publish pattern>``, responders listen on ``<their subscribe pattern>``);
* its private inbox ``_INBOX.<bot id>.>`` (publish acks from JetStream, JetStream API answers, and the
  bus's sync-with-server message to itself: ``nats-py`` connects with ``inbox_prefix``);
* its reply inbox ``_CIT.reply.<bot id>.>`` (answers to its requests), and publish on the reply inbox
  of every bot that can send it a request (one whose publish patterns overlap its subscribe patterns);
* for its one JetStream consumer (:func:`bot_consumer`): subscribe on the deliver subject, publish on
  ``$JS.ACK.<stream>.<consumer>.>`` (ack, nak, term), and the API calls ``CONSUMER.INFO`` and
  ``CONSUMER.PAUSE`` (pause and resume) of that consumer only, plus ``STREAM.INFO`` of the stream
  (read-only: which topics are stored).

A bot may *not* create, change or delete a consumer: ``CONSUMER.CREATE`` carries the filter subjects in
its body, which a subject permission cannot inspect, so a bot allowed to create its own consumer could
point it at any stored topic. The host user creates every bot's consumer from the config.

The host user (the ``citarion-host`` process: stream, consumers, key-value buckets, recording, system
reports) may use every subject: managing JetStream already lets it read every stored event, and with a
shared connection it carries every bot's traffic. Its credentials are what must stay out of the bots'
reach (``docs/nats-auth.md`` says what that takes).

Pure: no I/O, no nats-py connection; ``natsconf`` renders these grants into server configuration.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# What a bot's own connection uses (bus/nats/lanes.py), so the permissions and the bus cannot disagree.
from .bus.nats.lanes import INBOX_ROOT, REPLY_ROOT, inbox_prefix, reply_prefix
from .bus.nats.requests import RESPONDERS_PREFIX
from .bus.nats.stream import deliver_subject, reduce_filters, validate_consumer_name
from .errors import ConfigError
from .settings import BotConfig
from .topics import overlaps

__all__ = [
    "HOST_USER",
    "INBOX_ROOT",
    "REPLY_ROOT",
    "BotConsumer",
    "Grant",
    "bot_consumer",
    "bot_grant",
    "consumer_name",
    "grants",
    "host_grant",
    "inbox_prefix",
    "reply_prefix",
]

#: Name of the host user (bot ids cannot start with ``_``, so it never collides with one).
HOST_USER = "_host"
_JS_API = "$JS.API"
_JS_ACK = "$JS.ACK"


def consumer_name(bot: BotConfig) -> str:
    """The durable JetStream consumer of a bot: its queue group, else its id (one per bot, all its
    ``subscribe`` patterns as filter subjects; the members of a queue group share it)."""
    name = bot.consumer
    try:
        return validate_consumer_name(name, "queue group" if bot.queue else "bot id")
    except ValueError as exc:
        raise ConfigError(f"bot {bot.id!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class BotConsumer:
    """The JetStream consumer the host creates for a bot, and that the bot's user may use."""

    stream: str
    name: str
    deliver_subject: str
    filter_subjects: tuple[str, ...]
    queue: str | None


def bot_consumer(bot: BotConfig, stream: str) -> BotConsumer | None:
    """The consumer of ``bot`` on ``stream`` (push, deliver subject shared by a queue group); None for
    a bot that subscribes to nothing (a consumer without filter subjects would deliver every event)."""
    if not bot.subscribe:
        return None
    name = consumer_name(bot)
    return BotConsumer(
        stream=stream,
        name=name,
        deliver_subject=deliver_subject(stream, name),
        filter_subjects=tuple(reduce_filters(bot.subscribe)),  # what the host gives the server
        queue=bot.queue,
    )


@dataclass(frozen=True, slots=True)
class Grant:
    """One NATS user's allow-lists (everything else is denied), with a reason per subject.

    ``publish`` and ``subscribe`` map each allowed subject to why it is there (rendered as a comment
    next to it, so the generated file can be audited line by line).
    """

    user: str
    description: str
    publish: dict[str, str]
    subscribe: dict[str, str]


def host_grant() -> Grant:
    """The host user: every subject (see the module docstring for why)."""
    description = "the host: stream, consumers, key-value buckets (KV_*, $KV.<bucket>.>), recording, reports"
    why = "every subject: managing JetStream reads every stored event anyway"
    return Grant(HOST_USER, description, {">": why}, {">": why})


def bot_grant(bot: BotConfig, bots: Sequence[BotConfig], stream: str) -> Grant:
    """What ``bot`` may publish and subscribe; ``bots`` (the whole topology) decides whose requests
    it may answer."""
    consumer = bot_consumer(bot, stream)
    publish: dict[str, str] = {}
    subscribe: dict[str, str] = {}
    for pattern in bot.publish:
        publish.setdefault(pattern, "declared publish")
    for pattern in bot.publish:
        publish.setdefault(f"{RESPONDERS_PREFIX}.{pattern}", "request probe (no-responders check)")
    for pattern in bot.subscribe:
        subscribe.setdefault(pattern, "declared subscribe")
    for pattern in bot.subscribe:
        subscribe.setdefault(f"{RESPONDERS_PREFIX}.{pattern}", "answers request probes")
    own_inbox = f"{inbox_prefix(bot.id)}.>"
    publish.setdefault(own_inbox, "own inbox (sync with the server)")
    subscribe.setdefault(own_inbox, "own inbox (publish acks, API answers)")
    subscribe.setdefault(f"{reply_prefix(bot.id)}.>", "own reply inbox (answers to its requests)")
    for requester in _requesters(bot, bots):
        publish.setdefault(f"{reply_prefix(requester)}.>", f"replies to requests of bot {requester!r}")
    if consumer is not None:
        name = consumer.name
        subscribe.setdefault(consumer.deliver_subject, f"its consumer {name!r} (deliveries)")
        publish.setdefault(f"{_JS_ACK}.{stream}.{name}.>", f"ack/nak/term of its consumer {name!r}")
        publish.setdefault(f"{_JS_API}.CONSUMER.INFO.{stream}.{name}", "its consumer's state")
        publish.setdefault(f"{_JS_API}.CONSUMER.PAUSE.{stream}.{name}", "pause/resume its consumer")
    publish.setdefault(f"{_JS_API}.STREAM.INFO.{stream}", "which topics the stream stores (read-only)")
    return Grant(bot.id, f"bot {bot.id} ({bot.code})", publish, subscribe)


def _requesters(bot: BotConfig, bots: Iterable[BotConfig]) -> list[str]:
    """Ids of the bots whose requests ``bot`` can receive (their publish overlaps its subscribe)."""
    return [other.id for other in bots if any(overlaps(p, s) for p in other.publish for s in bot.subscribe)]


def grants(bots: Sequence[BotConfig], stream: str) -> list[Grant]:
    """The host user, then one user per bot (disabled ones too: enabling one by a reload must not
    need new credentials). Raises :class:`ConfigError` if the topology cannot be confined."""
    problems = _topology_problems(bots)
    if problems:
        raise ConfigError(f"cannot generate NATS permissions ({len(problems)} problems)", problems)
    return [host_grant(), *(bot_grant(bot, bots, stream) for bot in bots)]


def _topology_problems(bots: Sequence[BotConfig]) -> list[str]:
    """Bots that would share a user or a consumer they must not share: ids are unique; one consumer
    has one filter, so the members of a queue group must subscribe to the same patterns, and a queue
    group may not be named like another bot's id."""
    counts = Counter(bot.id for bot in bots)
    problems = [f"bot id {i!r} appears {n} times: one NATS user each" for i, n in counts.items() if n > 1]
    seen: dict[str, BotConfig] = {}
    for bot in bots:
        if not bot.subscribe:
            continue  # no consumer
        try:
            name = consumer_name(bot)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        first = seen.setdefault(name, bot)
        if first is bot:
            continue
        if first.queue is None or bot.queue is None:
            problems.append(
                f"bot {bot.id!r}: consumer {name!r} would be shared with bot {first.id!r} "
                "(a queue group named like a bot id): rename the queue group"
            )
        elif set(first.subscribe) != set(bot.subscribe):
            problems.append(
                f"bot {bot.id!r}: queue group {name!r} shares one consumer with bot {first.id!r}, but "
                f"subscribes {bot.subscribe} instead of {first.subscribe}: a member would receive "
                "events outside its own patterns; give the members the same subscribe patterns"
            )
    return problems
