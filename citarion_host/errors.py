"""The exceptions citarion-host raises, as one tree so callers can catch at the depth they need.

::

    CitarionError
    ├── BusError
    │   ├── BusClosedError          publish/subscribe on a closed bus
    │   ├── PublishError            a backend could not store/send an event (message says why)
    │   ├── BackpressureTimeoutError a high/critical publish found a subscriber's backlog full for
    │   │                           longer than the bus's backpressure timeout (names both)
    │   ├── NoRespondersError       a request found no subscriber
    │   ├── RequestTimeoutError     a request got no reply in time
    │   └── SubscriptionRefusedError the server refused a bot's subscription (per-bot isolation:
    │                               outside its NATS user's grant; names the bot and the subject)
    ├── PublishNotAllowedError      a bot published outside its declared patterns
    ├── StateError                  a bot's state cannot be snapshotted, stored or restored (names
    │                               the bot and the field)
    ├── BotExit                     a bot's code called ``sys.exit()``: that bot failed, the host goes on
    └── ConfigError                 invalid configuration (names file, bot id and key)

Validation errors are ``ValueError`` subclasses defined next to what they validate:
``topics.TopicError``, ``events.InvalidEventError``, ``payloads.PayloadError``.
"""

from __future__ import annotations

from collections.abc import Iterable

from .findings import Finding

__all__ = [
    "BackpressureTimeoutError",
    "BotExit",
    "BusClosedError",
    "BusError",
    "CitarionError",
    "ConfigError",
    "HandledFailure",
    "NoRespondersError",
    "PublishError",
    "PublishNotAllowedError",
    "RequestTimeoutError",
    "StateError",
    "SubscriptionRefusedError",
]


class CitarionError(Exception):
    """Base of every citarion-host error."""


class BusError(CitarionError):
    """Something went wrong on the event bus."""


class BusClosedError(BusError):
    """The bus is closed (or closing) and accepts no more publishes or subscriptions."""


class PublishError(BusError):
    """An event could not be published; nothing was stored."""


class BackpressureTimeoutError(BusError, TimeoutError):
    """A ``high``/``critical`` event waited for room in a subscriber's full backlog longer than the bus's
    ``backpressure_timeout_s`` and was not published to anyone (those events are never dropped: their
    publisher waits, then gets this error). ``subscriber`` and ``topic`` name who was full and what
    waited."""

    def __init__(self, message: str, *, subscriber: str, topic: str) -> None:
        super().__init__(message)
        self.subscriber = subscriber
        self.topic = topic


class NoRespondersError(BusError):
    """A request was published but no subscriber could answer it."""


class RequestTimeoutError(BusError, TimeoutError):
    """A request got no reply within its timeout."""


class SubscriptionRefusedError(BusError):
    """The NATS server refused a bot's subscription (``isolation = "per-bot"``: a pattern outside its
    NATS user's grant). Raised by the bus with nothing of that subscription left in place; the host
    marks only that bot failed (a permission refusal does not heal by retrying), the others go on."""

    def __init__(self, message: str, bot_id: str, subject: str) -> None:
        super().__init__(message)
        self.bot_id = bot_id
        self.subject = subject


class PublishNotAllowedError(CitarionError):
    """A bot tried to publish a topic outside its declared ``publish`` patterns; nothing was sent."""


class StateError(CitarionError):
    """A bot's state could not be snapshotted, stored or restored: a stored state its ``State`` does
    not fit (the message names the bot and the field), a value that cannot be encoded, a store that
    cannot be read or written. See ``docs/state.md``."""


class ConfigError(CitarionError):
    """The configuration is invalid. ``findings`` holds every problem as a structured
    :class:`~citarion_host.findings.Finding` (file, bot id, key, message); ``problems`` is the same
    as text, one line each. ``str()`` is the one-line summary given as ``message``.

    ``problems`` may also be plain strings (a problem that belongs to no file or key, such as a
    server refusing a stream's settings): each becomes a finding with only a message.
    """

    def __init__(self, message: str, problems: Iterable[Finding | str] | None = None) -> None:
        super().__init__(message)
        found = tuple(_as_finding(problem) for problem in problems or ())
        self.findings: tuple[Finding, ...] = found or (_as_finding(message),)

    @classmethod
    def of(cls, finding: Finding) -> ConfigError:
        """An error made of one finding, whose text is also the message."""
        return cls(finding.text, [finding])

    @property
    def problems(self) -> list[str]:
        return [finding.text for finding in self.findings]


def _as_finding(problem: Finding | str) -> Finding:
    return problem if isinstance(problem, Finding) else Finding("error", "", None, "", problem)


class BotExit(CitarionError):
    """A bot's code raised ``SystemExit`` (its own ``sys.exit()``, or a library's: an argument parser,
    a CLI helper): a failure of that bot, reported and restarted like any other. Left as it was, it
    went through asyncio, which lets ``SystemExit`` end the event loop, and one bot ended the host."""

    @classmethod
    def of(cls, exc: BaseException) -> Exception:
        """``exc`` as the failure of a bot's code: a ``SystemExit`` becomes a :class:`BotExit`."""
        if isinstance(exc, Exception):
            return exc
        code = exc.code if isinstance(exc, SystemExit) else None
        failure = cls(f"the bot called sys.exit({'' if code is None else repr(code)})")
        failure.__cause__ = exc
        return failure


class HandledFailure(CitarionError):
    """A handler's failure that its owner has already reported (the host's bot supervisor, on
    ``system.bot.error``): raised on to the bus so that the delivery is settled as failed (nak with
    backoff, ``max_deliver``, dead letter on a durable subscription) without a second report."""
