"""Connection options for nats-py from :class:`~citarion_host.bus.config.NatsSettings`.

Shared by the bus and by :func:`citarion_host.replay.replay`, so credentials, TLS and the reconnect
policy are read from the settings in one place.
"""

from __future__ import annotations

import random
import socket
import ssl
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client, Server

from .config import NatsSettings

__all__ = ["auth_options", "backoff", "connection_options", "server_url"]


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
