"""Connection options for nats-py from :class:`~citarion_host.bus.config.NatsSettings`.

Shared by the bus and by :func:`citarion_host.replay.replay`, so credentials, TLS and the reconnect
policy are read from the settings in one place.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client, Server
from nats.aio.msg import Msg

from .config import NatsSettings

__all__ = [
    "auth_options",
    "backoff",
    "close_connection",
    "connection_options",
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
        "reconnect_to_server_handler": backoff(settings),
        # Topics and patterns are validated by the catalog and the topics module before they get here.
        "skip_subject_validation": True,
        **auth_options(settings),
        **callbacks,
    }


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


async def close_connection(nc: Client) -> None:
    """Close ``nc`` even when the server is gone, saying what could not be sent.

    nats-py's ``close()`` writes what is left in its buffer (publishes and acks issued while
    reconnecting) and, if the socket is already dead, raises half way: its subscription tasks
    and transport stay open. Nothing buffered can reach a server we are leaving, so it is dropped
    here first, loudly: core events in it are lost; unacknowledged JetStream events are redelivered.
    """
    if nc.is_closed:
        return
    pending = getattr(nc, "_pending_data_size", 0)
    if not nc.is_connected and pending:
        log.warning(
            "closing while disconnected: buffered commands not sent",
            extra={"bytes": pending, "status": nc._status},
        )
        nc._pending = []
        nc._pending_data_size = 0
    try:
        await nc.close()
    except OSError as exc:  # the socket died between the check above and nats-py's last write
        log.warning("closing the NATS connection failed", extra={"error": repr(exc)})
