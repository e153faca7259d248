"""Connection options for nats-py from :class:`~citarion_host.bus.config.NatsSettings`.

Shared by the bus and by :func:`citarion_host.replay.replay`, so credentials, TLS and the reconnect
policy are read from the settings in one place, and so is the first connection (:func:`connect`):
bounded in time, and failing with one line that names the servers (credentials masked) and the
cause. nats-py alone retries a refused connection for about two minutes, reports a wrong password
as a bare ``TimeoutError`` once a caller's timeout hits, and logs each failed attempt with a
traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client, Server
from nats.aio.msg import Msg
from nats.errors import AuthorizationError

from ...errors import BusError
from ...redact import mask_text
from ..config import NatsSettings

__all__ = [
    "auth_options",
    "backoff",
    "connect",
    "connect_budget",
    "connection_options",
    "describe_connect_error",
    "server_url",
    "sync_with_server",
]

log = logging.getLogger("citarion_host.bus.nats")


def auth_options(settings: NatsSettings) -> dict[str, Any]:
    """Credentials and TLS as ``nats.connect`` keyword arguments (unset ones left out)."""
    options = {
        "user": settings.user,
        "password": settings.password,
        "token": settings.token,
        "user_credentials": settings.creds_file,
        "nkeys_seed": settings.nkeys_seed,
        "tls": tls_context(settings),
    }
    return {key: value for key, value in options.items() if value is not None}


def connection_options(settings: NatsSettings, **callbacks: Any) -> dict[str, Any]:
    """Everything the bus passes to ``nc.connect``; ``callbacks`` are the ``*_cb`` arguments."""
    return {
        "servers": settings.servers,
        "name": settings.connection_name or socket.gethostname(),
        "connect_timeout": settings.connect_timeout_s,
        "reconnect_time_wait": settings.reconnect_wait_s,
        "max_reconnect_attempts": settings.max_reconnect_attempts,
        "ping_interval": settings.ping_interval_s,
        "max_outstanding_pings": settings.max_outstanding_pings,
        "reconnect_to_server_handler": backoff(settings),
        # Topics and patterns are validated by the catalog and the topics module before they get here.
        "skip_subject_validation": True,
        **auth_options(settings),
        **callbacks,
    }


def connect_budget(settings: NatsSettings) -> float:
    """How long a first connection may take: one connect timeout per server, two reconnect waits
    and a second of slack. Beyond it the servers are taken as unreachable."""
    return settings.connect_timeout_s * len(settings.servers) + settings.reconnect_wait_s * 2 + 1.0


async def connect(nc: Client, settings: NatsSettings, **options: Any) -> None:
    """Connect ``nc`` (``options`` as for :func:`connection_options`) within :func:`connect_budget`.

    Fails fast when a server refuses the credentials (nats-py would retry them until the budget is
    spent). On failure ``nc`` is closed and :class:`~citarion_host.errors.BusError` says which
    servers (credentials masked) and why: the last attempt's error, not the timeout.
    """
    budget = connect_budget(settings)
    refused = asyncio.Event()
    connecting = True
    user_error_cb = options.pop("error_cb", None)

    async def on_error(error: Exception) -> None:
        if connecting and _is_auth_error(error):
            refused.set()
        if user_error_cb is not None:
            await user_error_cb(error)
        else:
            log.debug("NATS connection error", extra={"error": mask_text(repr(error))})

    attempt = asyncio.ensure_future(nc.connect(**connection_options(settings, error_cb=on_error, **options)))
    gave_up = asyncio.ensure_future(refused.wait())
    try:
        done, _ = await asyncio.wait({attempt, gave_up}, timeout=budget, return_when=asyncio.FIRST_COMPLETED)
        if attempt in done:
            attempt.result()  # raises what nats-py raised
            return
        attempt.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await attempt
        raise TimeoutError(f"no connection within {budget:g}s")
    except Exception as exc:  # any failure to connect, from socket errors to a malformed URL
        cause = nc.last_error or exc
        with contextlib.suppress(Exception):
            await nc.close()
        raise BusError(describe_connect_error(settings.servers, cause, budget)) from None
    finally:
        connecting = False
        gave_up.cancel()


def describe_connect_error(servers: list[str], cause: BaseException, budget: float) -> str:
    """``cannot connect to NATS at <servers, masked>: <why>``, one line."""
    where = mask_text(", ".join(servers))
    if _is_auth_error(cause):
        why = "authorization violation: the server refused the credentials (user/password, token,"
        why += " creds_file or nkeys_seed)"
    elif isinstance(cause, TimeoutError):
        why = f"no answer within {budget:g}s (is a NATS server listening there?)"
    else:
        why = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    return mask_text(" ".join(f"cannot connect to NATS at {where}: {why}".split()))


def _is_auth_error(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, AuthorizationError) or "authorization violation" in text


def backoff(settings: NatsSettings) -> Callable[[list[Server], dict[str, Any]], tuple[Server | None, float]]:
    """Reconnect policy: retry a server at once, then after ``reconnect_wait_s`` doubling up to
    ``reconnect_wait_max_s`` (with jitter, so a fleet of hosts does not reconnect in lockstep)."""

    def next_server(servers: list[Server], info: dict[str, Any]) -> tuple[Server | None, float]:
        server = min(servers, key=lambda s: s.reconnects)  # the least-tried server of the pool
        if server.reconnects == 0:
            return server, 0.0
        delay = min(settings.reconnect_wait_s * 2 ** (server.reconnects - 1), settings.reconnect_wait_max_s)
        return server, delay * random.uniform(0.8, 1.0)

    return next_server


def tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    """An ``SSLContext`` from ``settings.tls`` (None: nats-py uses TLS only if the URL asks for it)."""
    tls = settings.tls
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def server_url(nc: Client) -> str | None:
    """``nats://host:port`` of the server the client is connected to, if any."""
    url = nc.connected_url
    return f"{url.scheme}://{url.hostname}:{url.port}" if url is not None else None


async def sync_with_server(nc: Client, timeout: float) -> None:
    """Return once the server has processed everything ``nc`` sent before this call.

    Why not ``nc.flush()``: nats-py 2.16 writes its ``PING`` straight to the socket while earlier
    commands (a ``SUB``, an ack) may still wait in its pending buffer for the flusher task, so the
    ``PONG`` can come back before the server has seen them. Across connections that showed up as a
    subscriber that "was not there yet" about once in a few hundred subscriptions. A message to
    ourselves goes through the same buffer as everything before it, so its arrival proves the
    server got all of it.
    Raises ``TimeoutError`` if it does not come back within ``timeout`` seconds.
    """
    arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_message(msg: Msg) -> None:
        if not arrived.done():
            arrived.set_result(None)

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_message)
    try:
        await nc.publish(inbox, b"")
        async with asyncio.timeout(timeout):
            await arrived
    finally:
        await sub.unsubscribe()
