"""Serving the dashboard from inside the host's event loop (uvicorn), started and stopped with it.

Why in the same loop and not a thread or a process: the page reads the host's own objects (runners,
book, ring) with no copying and no locks, and SSE streams are woken by the feed directly. The cost is
that request handling shares the loop with the bots; the handlers are short (JSON of bounded
collections) and the streams write in batches (``sse.py``), which the overhead benchmark measures
(``citarion-host bench --case ui``).

The socket is bound here, before the host starts, so a port already in use is one clear error
(``UiError``) instead of uvicorn's ``sys.exit``; uvicorn gets the bound socket and installs no signal
handlers (the host owns SIGINT/SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import uvicorn

from ..errors import CitarionError
from .dashboard import Dashboard
from .web import create_app

__all__ = ["DashboardServer", "UiError"]

log = logging.getLogger("citarion_host.ui")


class UiError(CitarionError):
    """The dashboard cannot be served (the port is taken, the address does not exist...)."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the host handles the signals


class DashboardServer:
    """Binds, serves and stops the dashboard of one host."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.settings = dashboard.settings
        self._socket: socket.socket | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._sampler: asyncio.Task[None] | None = None
        self.port = self.settings.port

    @property
    def url(self) -> str:
        host = self.settings.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/"

    def bind(self) -> None:
        """Take the port now (before the bots start): a clear error if it cannot be had."""
        host, port = self.settings.host, self.settings.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            sock = socket.create_server((host, port), family=family, backlog=128, reuse_port=False)
        except OSError as exc:
            raise UiError(f"[ui] cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        self.dashboard.url = self.url

    async def start(self) -> None:
        if self._socket is None:
            self.bind()
        assert self._socket is not None
        config = uvicorn.Config(
            create_app(self.dashboard),
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            ws="none",
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="ui-server")
        self._sampler = asyncio.create_task(self.dashboard.rates.run(self._stop), name="ui-rates")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()  # raises what stopped it
        log.info("dashboard serving", extra={"url": self.url})

    async def stop(self) -> None:
        """End the streams, stop serving, release the port."""
        self.dashboard.feed.close()
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        for task in (self._task, self._sampler):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 5)
        if self._socket is not None:
            self._socket.close()
            self._socket = None
