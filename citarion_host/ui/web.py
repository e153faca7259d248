"""The dashboard's HTTP face: a FastAPI app over one :class:`~.dashboard.Dashboard`.

Routes (the OpenAPI document at ``/openapi.json`` lists them with their shapes; ``docs/ui.md`` says
what each is for):

* ``/`` and ``/static/*``: the page (``static/``); ``/static/vendor/plotly.min.js`` is the file the
  installed plotly package ships (site-packages), never a copy and never a CDN;
* ``/events``: the live feed as Server-Sent Events (``sse.py``);
* ``/api/*``: JSON for the page and for scripts; ``POST /api/bots/{id}/{stop,start,restart}`` and
  ``POST /api/reload`` are the controls;
* ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``, ``/asyncapi.json``.

Why FastAPI over bare Starlette: the OpenAPI document comes from the route signatures and the
response models, so it cannot drift from the code. Its Swagger page is off (it would load scripts
from a CDN). Responses are encoded by msgspec without a validation pass (the models document them).

Guards, in order: Host header (``TrustedHostMiddleware``: a page on another site cannot reach a
loopback dashboard by DNS rebinding), the token (``[ui] token``; from ``Authorization: Bearer``, the
``citarion_token`` cookie, or ``?token=`` which also sets that cookie), and for the controls a custom
header (``X-Citarion-Control``), which no cross-site form can send.
"""

from __future__ import annotations

import hmac
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import msgspec
from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import CitarionError
from .asyncapi import asyncapi_document
from .dashboard import Dashboard
from .metrics import registry_for
from .models import (
    BotView,
    BusView,
    ControlResult,
    EventRow,
    LineageView,
    Overview,
    Readiness,
    ReloadView,
    TopologyView,
)

__all__ = ["CONTROL_HEADER", "TOKEN_COOKIE", "create_app", "plotly_js"]

CONTROL_HEADER = "X-Citarion-Control"
TOKEN_COOKIE = "citarion_token"
_OPEN_PATHS = frozenset({"/healthz"})
_ACTIONS = ("stop", "start", "restart")
_TOPIC_QUERY = Query(default=[">"], description="NATS patterns (repeatable); default everything")
STATIC = Path(str(files("citarion_host.ui") / "static"))


def plotly_js() -> Path:
    """plotly.js as shipped by the installed plotly package (``plotly/package_data/plotly.min.js``)."""
    import plotly  # type: ignore[import-untyped]

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the plotly package ships no plotly.min.js (reinstall plotly)")
    return path


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


class TokenGate:
    """Refuse requests without the token (when one is set); ``?token=`` on a page sets the cookie."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None or scope["path"] in _OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        offered = []
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            offered.append(authorization[7:].strip())
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == TOKEN_COOKIE:
                offered.append(value)
        from_query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [])
        offered += from_query
        if not any(hmac.compare_digest(candidate.encode(), self.token.encode()) for candidate in offered):
            response = _json({"detail": "a valid token is required ([ui] token)"}, 401)
            await response(scope, receive, send)
            return
        if not from_query:
            await self.app(scope, receive, send)
            return
        cookie = f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode("latin-1")

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, with_cookie)


def allowed_hosts(bind: str) -> list[str]:
    """Host headers the dashboard answers: the loopback names, or anything when bound to all addresses
    (the token guards it then)."""
    if bind in ("0.0.0.0", "::", ""):
        return ["*"]
    return list(dict.fromkeys([bind, "127.0.0.1", "localhost", "::1", "[::1]"]))


def create_app(dashboard: Dashboard) -> FastAPI:
    """The ASGI app serving ``dashboard``."""
    settings = dashboard.settings
    app = FastAPI(
        title="citarion-host dashboard",
        version=__version__,
        description="The live view and controls of one citarion-host (docs/ui.md).",
        docs_url=None,
        redoc_url=None,
    )
    metrics = registry_for(dashboard)
    _routes(app, dashboard, metrics)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(TokenGate, token=settings.token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings.host))  # outermost
    return app


def _routes(app: FastAPI, dashboard: Dashboard, metrics: Any) -> None:
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/static/vendor/plotly.min.js", include_in_schema=False)
    async def plotly() -> FileResponse:
        return FileResponse(plotly_js(), media_type="text/javascript")

    @app.get("/events", summary="Live events as Server-Sent Events", response_class=StreamingResponse)
    async def events(
        request: Request,
        topic: list[str] = _TOPIC_QUERY,
        last_event_id: str | None = Header(default=None, alias="Last-Event-ID"),
    ) -> StreamingResponse:
        from ..topics import TopicError, split_pattern

        for pattern in topic:
            try:
                split_pattern(pattern)
            except TopicError as exc:
                raise HTTPException(400, f"topic: {exc}") from None
        resume = last_event_id or request.query_params.get("lastEventId")
        client = f"{request.client.host}:{request.client.port}" if request.client else "?"
        return StreamingResponse(
            dashboard.streams.stream(topic, resume, client),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.get("/api/overview", response_model=Overview, summary="Host, bus and run at a glance")
    async def overview() -> Response:
        return _json(dashboard.overview())

    @app.get("/api/bots", response_model=list[BotView], summary="Every configured bot: state, rates, PnL")
    async def bots() -> Response:
        return _json(dashboard.bots())

    @app.post(
        "/api/bots/{bot_id}/{action}",
        response_model=ControlResult,
        summary="Stop, start or restart one bot",
        description=f"Needs the header {CONTROL_HEADER} (any value). action: stop, start or restart.",
    )
    async def control(bot_id: str, action: str, request: Request) -> Response:
        _require_control(request)
        if action not in _ACTIONS:
            raise HTTPException(404, f"no action {action!r} (stop, start, restart)")
        host = dashboard.host
        if bot_id not in host.runners:
            raise HTTPException(404, f"no running or stopped bot {bot_id!r}")
        await getattr(host, f"{action}_bot")(bot_id)
        return _json({"bot": bot_id, "action": action, "state": host.runners[bot_id].state})

    @app.post(
        "/api/reload",
        response_model=ReloadView,
        summary="Re-read the config files and apply the difference (as the reloader does)",
        description=f"Needs the header {CONTROL_HEADER}. An invalid config changes nothing: status rejected.",
    )
    async def reload(request: Request) -> Response:
        from ..reload import ConfigReloader

        _require_control(request)
        try:
            result = await ConfigReloader(dashboard.host, watch_plugins=False).reload_once(force=True)
        except CitarionError as exc:
            return _json({"status": "rejected", "errors": [str(exc)], "diff": None})
        diff = result.diff.summary() if result.diff is not None else None
        return _json({"status": result.status, "errors": result.errors, "diff": diff})

    @app.get("/api/topology", response_model=TopologyView, summary="Wiring graph with the check's findings")
    async def topology() -> Response:
        return _json(dashboard.topology())

    @app.get(
        "/api/positions", response_model=list[dict[str, Any]], summary="Last position per bot and series"
    )
    async def positions() -> Response:
        return _json(dashboard.positions())

    @app.get(
        "/api/orders", response_model=dict[str, list[EventRow]], summary="Open orders and recent closed ones"
    )
    async def orders() -> Response:
        return _json(dashboard.orders())

    @app.get("/api/fills", response_model=list[EventRow], summary="Fills (optionally of one exchange:symbol)")
    async def fills(series: str | None = None) -> Response:
        return _json(dashboard.fills(series))

    @app.get(
        "/api/prices", response_model=dict[str, Any], summary="Candle closes of a series, with its fills"
    )
    async def prices(series: str | None = None) -> Response:
        return _json(dashboard.prices(series))

    @app.get("/api/pnl", response_model=dict[str, Any], summary="PnL series per bot and in total (data time)")
    async def pnl() -> Response:
        return _json(dashboard.pnl())

    @app.get("/api/signals", response_model=list[EventRow], summary="Recent strategy signals, newest first")
    async def signals() -> Response:
        return _json(dashboard.signals())

    @app.get(
        "/api/consensus",
        response_model=list[dict[str, Any]],
        summary="LOGOS decisions and latest signals per series",
    )
    async def consensus() -> Response:
        return _json(dashboard.consensus())

    @app.get(
        "/api/alerts",
        response_model=dict[str, Any],
        summary="Risk alerts by kind, recent ones, blocks in force",
    )
    async def alerts() -> Response:
        return _json(dashboard.alerts())

    @app.get(
        "/api/bus", response_model=BusView, summary="Bus statistics, rates, drops, dead letters, SSE streams"
    )
    async def bus() -> Response:
        return _json(dashboard.bus())

    @app.get(
        "/api/events/{event_id}", response_model=dict[str, Any], summary="One retained event (wire JSON)"
    )
    async def event(event_id: str) -> Response:
        found = dashboard.event(event_id)
        if found is None:
            raise HTTPException(404, f"event {event_id} is not in the window ([ui] retain_events)")
        return _json(found)

    @app.get("/api/lineage/{event_id}", response_model=LineageView, summary="An event's chain of causes")
    async def lineage(event_id: str) -> Response:
        found = dashboard.lineage(event_id)
        if found is None:
            raise HTTPException(404, f"event {event_id} is not in the window ([ui] retain_events)")
        return _json(found)

    @app.get("/metrics", summary="Prometheus metrics (docs/metrics.md)", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> Response:
        return _json({"status": "alive"})

    @app.get(
        "/readyz", response_model=Readiness, summary="Readiness: bus connected, every enabled bot running"
    )
    async def readyz() -> Response:
        ready, detail = dashboard.readiness()
        return _json(detail, 200 if ready else 503)

    @app.get("/asyncapi.json", summary="AsyncAPI 3.0 document of the running topology")
    async def asyncapi() -> Response:
        types = _payload_types(dashboard)
        return _json(asyncapi_document(dashboard.host.config, types))


def _require_control(request: Request) -> None:
    if CONTROL_HEADER.lower() not in request.headers:
        raise HTTPException(
            403, f"controls need the {CONTROL_HEADER} header (cross-site requests cannot send it)"
        )


def _payload_types(dashboard: Dashboard) -> dict[str, Any]:
    from ..payloads import BUILTIN_PAYLOADS

    types: dict[str, Any] = dict(BUILTIN_PAYLOADS)
    for mapping in dashboard.host.plugins.manager.hook.citarion_payload_types():
        types.update(mapping)
    return types
