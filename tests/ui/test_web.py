"""The HTTP face: the token, the Host header guard, the control header, the controls themselves, the
OpenAPI document, health, errors as one clear line."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from citarion_host.errors import ConfigError
from citarion_host.settings import UiSettings
from citarion_host.ui import UiError
from citarion_host.ui.web import CONTROL_HEADER, TOKEN_COOKIE

from .conftest import QUIET_FLEET, Served, close, serve, write_config

TOKEN = "s3cret-token-of-32-characters-xx"


async def test_the_token_guards_everything_but_healthz(tmp_path: Path) -> None:
    served = await serve(
        write_config(tmp_path, QUIET_FLEET.replace("port = 0", f'port = 0\ntoken = "{TOKEN}"'))
    )
    try:
        async with served.client() as client:
            assert (await client.get("/healthz")).status_code == 200
            for path in ("/", "/api/bots", "/metrics", "/events", "/readyz", "/openapi.json"):
                assert (await client.get(path)).status_code == 401, path
            wrong = await client.get("/api/bots", headers={"Authorization": "Bearer nope-nope-nope-nope"})
            assert wrong.status_code == 401
            bearer = await client.get("/api/bots", headers={"Authorization": f"Bearer {TOKEN}"})
            assert bearer.status_code == 200 and len(bearer.json()) == 6
            page = await client.get("/", params={"token": TOKEN})
            assert page.status_code == 200 and TOKEN_COOKIE in page.headers["set-cookie"]
            assert "HttpOnly" in page.headers["set-cookie"]
            assert (await client.get("/api/overview")).status_code == 200  # the cookie the page set
        async with served.client(cookies={TOKEN_COOKIE: TOKEN}) as client:
            assert (await client.get("/api/overview")).status_code == 200
    finally:
        await close(served)


def test_a_dashboard_off_loopback_needs_a_token() -> None:
    with pytest.raises(ValueError, match="not a loopback address: set token"):
        UiSettings(enabled=True, host="0.0.0.0")
    UiSettings(enabled=True, host="0.0.0.0", token=TOKEN)
    UiSettings(enabled=False, host="0.0.0.0")  # off: nothing to guard


async def test_another_host_header_is_refused(quiet: Served) -> None:
    async with quiet.client() as client:
        assert (await client.get("/api/overview")).status_code == 200
        rebound = await client.get("/api/overview", headers={"Host": "evil.example:80"})
    assert rebound.status_code == 400


async def test_controls_need_their_header_and_stop_start_restart_a_bot(quiet: Served) -> None:
    host = quiet.host
    async with quiet.client() as client:
        assert (await client.post("/api/bots/mesh/stop")).status_code == 403
        assert host.runners["mesh"].state == "running"
        headers = {CONTROL_HEADER: "1"}
        stopped = await client.post("/api/bots/mesh/stop", headers=headers)
        assert stopped.json() == {"bot": "mesh", "action": "stop", "state": "stopped"}
        assert host.runners["mesh"].state == "stopped"
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.json()  # stopped on purpose: still ready
        bots = {b["id"]: b for b in (await client.get("/api/bots")).json()}
        assert bots["mesh"]["state"] == "stopped" and bots["mesh"]["stoppedByOperator"]
        started = await client.post("/api/bots/mesh/start", headers=headers)
        assert started.json()["state"] == "running" and host.runners["mesh"].state == "running"
        restarted = await client.post("/api/bots/mesh/restart", headers=headers)
        assert restarted.json()["state"] == "running"
        assert (await client.post("/api/bots/ghost/stop", headers=headers)).status_code == 404
        assert (await client.post("/api/bots/mesh/explode", headers=headers)).status_code == 404
        unchanged = await client.post("/api/reload", headers=headers)
        assert unchanged.json()["status"] in ("applied", "unchanged"), unchanged.json()


async def test_a_reload_through_the_page_applies_or_rejects(tmp_path: Path) -> None:
    loaded = write_config(tmp_path, QUIET_FLEET)
    served = await serve(loaded)
    try:
        async with served.client() as client:
            headers = {CONTROL_HEADER: "1"}
            loaded.path.write_text(QUIET_FLEET.replace('id = "scout"', 'id = "scout2"'), encoding="utf-8")
            applied = (await client.post("/api/reload", headers=headers)).json()
            assert applied["status"] == "applied" and applied["diff"]["added"] == ["scout2"]
            loaded.path.write_text(QUIET_FLEET.replace('code = "GRD"', 'code = "GDR"'), encoding="utf-8")
            rejected = (await client.post("/api/reload", headers=headers)).json()
            assert rejected["status"] == "rejected" and "GDR" in " ".join(rejected["errors"])
            assert "scout2" in served.host.runners and served.host.runners["mesh"].state == "running"
    finally:
        await close(served)


async def test_the_openapi_document_lists_the_api(quiet: Served) -> None:
    async with quiet.client() as client:
        document = (await client.get("/openapi.json")).json()
        assert (await client.get("/docs")).status_code == 404  # Swagger UI would load a CDN
    paths = set(document["paths"])
    for path in (
        "/events", "/api/bots", "/api/bots/{bot_id}/{action}", "/api/reload", "/api/topology", "/api/positions",
        "/api/orders", "/api/pnl", "/api/alerts", "/api/consensus", "/api/bus", "/api/lineage/{event_id}",
        "/metrics", "/healthz", "/readyz", "/asyncapi.json",
    ):  # fmt: skip
        assert path in paths, path
    bot = document["components"]["schemas"]["BotView"]["properties"]
    assert {"state", "category", "inPerS", "outPerS", "lastError", "pnl", "restarts"} <= set(bot)


async def test_plotly_is_served_from_the_installed_package(quiet: Served) -> None:
    import plotly  # type: ignore[import-untyped]

    shipped = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
    async with quiet.client() as client:
        response = await client.get("/static/vendor/plotly.min.js")
        page = (await client.get("/")).text
    assert response.status_code == 200 and response.content == shipped
    assert "https://" not in page and "http://" not in page  # nothing from elsewhere


async def test_unknown_events_and_lineage_are_404_with_a_reason(quiet: Served) -> None:
    async with quiet.client() as client:
        response = await client.get("/api/lineage/nope")
    assert response.status_code == 404 and "not in the window" in response.json()["detail"]


async def test_a_taken_port_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UiError, match=rf"\[ui\] cannot listen on 127.0.0.1:{port}"):
            await serve(write_config(tmp_path, QUIET_FLEET.replace("port = 0", f"port = {port}")))


async def test_the_cli_refuses_ui_off_loopback_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from citarion_host.cli import main

    path = tmp_path / "ui.toml"
    path.write_text(QUIET_FLEET.replace("port = 0", 'host = "0.0.0.0"'), encoding="utf-8")
    assert main(["run", "--config", str(path), "--ui"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ui: host '0.0.0.0' is not a loopback address: set token" in err[0]
    with pytest.raises(ConfigError):
        from citarion_host.settings import load_config

        load_config(path, environ={"CITARION_UI__ENABLED": "true"})


async def test_healthz_is_open_and_httpx_sees_json(quiet: Served) -> None:
    async with httpx.AsyncClient(base_url=quiet.url) as client:
        assert (await client.get("/healthz")).json() == {"status": "alive"}
