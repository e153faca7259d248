"""A bot's own NATS connection, for ``[backend.nats] isolation = "per-bot"``.

With one shared connection the server sees a single user, the host's, and can refuse nothing a bot
does: the host's own checks (``PublishGuard``) are all there is, and code that reaches past the bot's
context bypasses them. With a :class:`BotLink` per bot, the bot's events, its subscription and its
consumer's acks go over a connection authenticated as the bot's NATS user (the permissions
``citarion-host nats-config`` generates, ``docs/nats-auth.md``), so the server refuses what that user
was not granted. The host's own connection keeps what the bots' users may not do: stream and consumer
management, key-value buckets, the host's reports.

A refusal arrives asynchronously (``-ERR 'Permissions Violation for Publish to "x"'``, nats-py's
``error_cb``); :func:`permission_violation` reads it and the link hands it to the bus, which counts and
reports it. Nothing is raised into the bot: the connection stays up (the server does not close it).

Credentials (:func:`bot_credentials`): ``CITARION_BOT_SEED_<ID>`` holds the bot's NKey seed itself, or
``<bot_seeds_dir>/<id>.nk`` is its seed file. Neither the seed nor the variable's value is logged; the
error for a missing one names the bot, the variable and the file, never a value.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError

from ...errors import BusError, ConfigError, PublishError
from ...events import EventCatalog
from ...topics import TopicError
from ..config import NatsSettings
from ._client import Wire, close_connection
from .connection import connect, sync_with_server
from .publisher import JetStreamPublisher, Outgoing
from .requests import Requests

__all__ = [
    "INBOX_ROOT",
    "REPLY_ROOT",
    "SEED_ENV_PREFIX",
    "BotLink",
    "bot_credentials",
    "inbox_prefix",
    "permission_violation",
    "reply_prefix",
    "seed_env_name",
]

log = logging.getLogger("citarion_host.bus.nats")

#: Root of the private inboxes: a bot connects with ``inbox_prefix = "_INBOX.<bot id>"``.
INBOX_ROOT = "_INBOX"
#: Root of the reply inboxes: ``metadata.replyTo`` (and the probe's reply) of a bot's requests.
REPLY_ROOT = "_CIT.reply"
#: ``CITARION_BOT_SEED_<ID>``: a bot's NKey seed (not a path), ahead of its file in ``bot_seeds_dir``.
SEED_ENV_PREFIX = "CITARION_BOT_SEED_"
_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"', re.IGNORECASE)
_HOST_CREDENTIALS = ("user", "password", "token", "creds_file", "nkeys_seed")

#: ``on_violation(link, operation, subject)``: the server refused ``operation`` on ``subject``.
OnViolation = Callable[["BotLink", str, str], None]


def inbox_prefix(bot_id: str) -> str:
    """The ``inbox_prefix`` a bot's connection uses: everything below it is the bot's alone."""
    return f"{INBOX_ROOT}.{bot_id}"


def reply_prefix(bot_id: str) -> str:
    """Where answers to a bot's requests go: bots that may answer it may publish below it.

    Apart from the private inbox on purpose: a responder can write here, so it must not be able to
    forge what arrives in the private inbox (JetStream publish acks, API answers).
    """
    return f"{REPLY_ROOT}.{bot_id}"


def seed_env_name(bot_id: str) -> str:
    """``CITARION_BOT_SEED_<ID>``: the id upper-cased, anything but letters and digits as ``_``."""
    return SEED_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", bot_id).upper()


def bot_credentials(settings: NatsSettings, bot_id: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The ``nats.connect`` keyword arguments that authenticate as bot ``bot_id`` (its NKey seed).

    Raises :class:`ConfigError` naming the bot, the variable and the file when neither is there.
    """
    variable = seed_env_name(bot_id)
    seed = environ.get(variable, "").strip()
    if seed:
        return {"nkeys_seed_str": seed}
    folder = settings.bot_seeds_dir
    if folder:
        path = Path(folder).expanduser() / f"{bot_id}.nk"
        if path.is_file():
            return {"nkeys_seed": str(path)}
    where = (
        f"{Path(folder).expanduser() / (bot_id + '.nk')}"
        if folder
        else "[backend.nats] bot_seeds_dir (not set)"
    )
    raise ConfigError(
        f'bot {bot_id!r}: [backend.nats] isolation = "per-bot" needs the bot\'s NKey seed: set {variable} '
        f"or provide {where} (citarion-host nats-config writes secrets/bots/<id>.nk)"
    )


def permission_violation(error: BaseException) -> tuple[str, str] | None:
    """``(operation, subject)`` if ``error`` is the server's permissions violation, else None;
    ``operation`` is ``publish`` or ``subscribe``. The subject is lower-case: nats-py (2.16) lower-cases
    the server's whole ``-ERR`` line before anyone sees it."""
    match = _VIOLATION.search(str(error))
    if match is None:
        return None
    operation = "publish" if match[1].lower() == "publish" else "subscribe"
    return operation, match[2]


class BotLink:
    """One bot's connection: its wire, its acknowledged publisher (JetStream), its refusal count.

    The bus owns the links and decides what goes over them (``NatsBus.for_bot``); this class only
    connects, sends, and reports what the connection hears.
    """

    def __init__(
        self,
        bot_id: str,
        settings: NatsSettings,
        catalog: EventCatalog,
        on_violation: OnViolation,
        on_reconnected: Callable[[BotLink], None],
    ) -> None:
        self.bot_id = bot_id
        self.nc = Client()
        self.wire = Wire(self.nc, lean=False)
        self.publisher: JetStreamPublisher | None = None
        #: The bot's requests: probes and answers over this connection, answers in its reply inbox.
        self.requests = Requests(self.nc, catalog, reply_prefix(bot_id))
        self._catalog = catalog
        self.state = "new"
        #: Refusals the server reported to this connection; of them, subscriptions, and the latest
        #: refused subscription's subject (the bus checks these after each subscribe).
        self.violations = 0
        self.refused_subscriptions = 0
        self.last_refused_subject = ""
        self.published = 0
        self._settings = settings
        self._on_violation = on_violation
        self._on_reconnected = on_reconnected
        self._gate = asyncio.Event()
        self._opening: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<BotLink {self.bot_id} {self.state}>"

    @property
    def opened(self) -> bool:
        """Connected once: from then on nats-py reconnects it by itself (a send while it is away waits
        for it, or fails when it is closed for good); only a link never connected is opened again."""
        return self.state not in ("new", "failed")

    async def open(
        self, environ: Mapping[str, str], jetstream: bool, on_unstored: Callable[[list[Outgoing], str], None]
    ) -> None:
        """Connect as the bot (once; concurrent callers wait for the same attempt). A failure raises
        :class:`BusError` naming the bot, and the next call tries again."""
        if self._opening is None or (self._opening.done() and not self.opened):
            self._opening = asyncio.ensure_future(self._open(environ, jetstream, on_unstored))
        await asyncio.shield(self._opening)

    async def _open(
        self, environ: Mapping[str, str], jetstream: bool, on_unstored: Callable[[list[Outgoing], str], None]
    ) -> None:
        base = self._settings
        credentials = bot_credentials(base, self.bot_id, environ)
        update: dict[str, Any] = dict.fromkeys(_HOST_CREDENTIALS)
        update["connection_name"] = f"{base.connection_name or 'citarion-host'}/{self.bot_id}"
        settings = base.model_copy(update=update)
        self.nc = Client()
        try:
            await connect(
                self.nc,
                settings,
                inbox_prefix=inbox_prefix(self.bot_id),
                error_cb=self._on_error,
                disconnected_cb=self._disconnected,
                reconnected_cb=self._reconnected,
                closed_cb=self._closed,
                **credentials,
            )
        except BusError as exc:
            self.state = "failed"
            raise BusError(f"bot {self.bot_id!r}: own connection (per-bot isolation): {exc}") from None
        self.wire = Wire.for_client(self.nc, lean=base.lean_wire)
        self.requests = Requests(self.nc, self._catalog, reply_prefix(self.bot_id))
        await self.requests.start()
        if jetstream:
            self.publisher = JetStreamPublisher(
                self.nc,
                self.wire,
                self._gate,
                timeout=base.publish_timeout_s,
                ack_timeout=base.publish_ack_timeout_s,
                max_in_flight=base.publish_max_in_flight,
                on_unstored=on_unstored,
            )
            await self.publisher.start()
        self.state = "connected"
        self._gate.set()
        log.info("bot connected to NATS as its own user", extra={"bot": self.bot_id})

    async def send_core(self, subject: str, data: bytes) -> None:
        """Core NATS: written to the connection (waiting up to ``publish_timeout_s`` for it)."""
        if not self._gate.is_set():
            try:
                async with asyncio.timeout(self._settings.publish_timeout_s):
                    await self._gate.wait()
            except TimeoutError:
                raise PublishError(
                    f"bot {self.bot_id!r}: publish on {subject!r}: not connected to NATS for "
                    f"{self._settings.publish_timeout_s:g}s"
                ) from None
        try:
            await self.wire.publish(subject, data)
        except (NatsError, TopicError) as exc:
            raise PublishError(f"bot {self.bot_id!r}: publish on {subject!r} failed: {exc!r}") from exc

    async def sync(self, timeout: float) -> None:
        """Everything sent so far processed by the server (and its refusals received)."""
        if self.nc.is_connected:
            await sync_with_server(self.nc, timeout)

    async def flush(self) -> None:
        if self.publisher is not None:
            await self.publisher.flush()

    async def close(self) -> None:
        self.state = "closing"
        self.requests.cancel_all()
        if self.publisher is not None:
            self.publisher.fail_all("the bus is closed")
        if self.nc.is_connected:
            try:
                await sync_with_server(self.nc, timeout=2)  # the last acks and naks
            except (NatsError, TimeoutError) as exc:
                log.debug("final flush failed", extra={"bot": self.bot_id, "error": repr(exc)})
        await close_connection(self.nc)
        self.state = "closed"

    # -- what the connection hears --------------------------------------------------------------------

    async def _on_error(self, error: Exception) -> None:
        refused = permission_violation(error)
        if refused is not None:
            self.violations += 1
            operation, subject = refused
            if operation == "subscribe":
                self.refused_subscriptions += 1
                self.last_refused_subject = subject
            self._on_violation(self, operation, subject)
            if operation == "publish" and self.publisher is not None:
                reason = f"bot {self.bot_id!r}: the NATS server refused publishing on it (permissions)"
                self.publisher.refused(subject, reason)
            return
        log.debug("NATS client error on a bot's connection", extra={"bot": self.bot_id, "error": repr(error)})

    async def _disconnected(self) -> None:
        self._gate.clear()
        if self.state == "connected":
            self.state = "disconnected"
            log.warning("bot's NATS connection lost", extra={"bot": self.bot_id})

    async def _reconnected(self) -> None:
        if self.state == "closed":
            return
        self.state = "connected"
        if self.publisher is not None:
            self.publisher.reconnected()
        self._gate.set()
        log.warning("bot's NATS connection back", extra={"bot": self.bot_id})
        self._on_reconnected(self)

    async def _closed(self) -> None:
        self._gate.set()  # waiting publishers go on and fail with "connection closed"
        if self.state == "closed":
            return
        if self.state not in ("closing", "new"):  # "new": its first connect failed, and says so
            log.error("bot's NATS connection closed for good", extra={"bot": self.bot_id})
        self.state = "closed"
        if self.publisher is not None:
            self.publisher.fail_all(f"bot {self.bot_id!r}: NATS connection closed")
