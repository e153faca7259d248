"""WLF's webhook rules against a real HTTP server: http(s) only, no blind or cross-host redirects,
explicit timeouts, URL secrets out of the logs, queued alerts flushed at stop and drops counted."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from citarion_bots.wolf import WolfBot, WolfParams
from pydantic import ValidationError

from citarion_host.payloads import RiskAlert
from citarion_host.testing import BotHarness


class Endpoint:
    """A real HTTP server on 127.0.0.1; what each path does is in ``Handler.do_POST``."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.requests: list[tuple[str, str, bytes]] = []  # (method, path, body)
        self.delay_s = delay_s
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                endpoint.requests.append(("POST", self.path, body))
                port = endpoint.port
                path = self.path.split("?")[0]
                if path.startswith("/slow"):
                    time.sleep(endpoint.delay_s)
                routes = {
                    "/fail": (500, None),
                    "/same-307": (307, "/ok"),
                    "/same-302": (302, "/ok"),
                    "/other-307": (307, f"http://localhost:{port}/ok"),
                    "/other-302": (302, f"http://localhost:{port}/ok"),
                    "/to-file": (307, "file:///etc/passwd"),
                    "/loop": (307, "/loop"),
                }
                status, location = routes.get(path, (500 if path.startswith("/fail") else 200, None))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                endpoint.requests.append(("GET", self.path, b""))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def posted(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(body) for method, p, body in self.requests if method == "POST" and p == path]

    def __enter__(self) -> Endpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    with Endpoint(delay_s=0.05) as server:
        yield server


def wolf(url: str, **params: Any) -> BotHarness:
    return BotHarness(
        WolfBot,
        {"console": "off", "webhook_url": url, "webhook_backoff_s": 0.01, "webhook_retries": 0, **params},
        bot_id="wolf",
        code="WLF",
        publish=["system.alert.>"],
    )


def alert(n: int) -> RiskAlert:
    return RiskAlert(kind="drawdown", severity="critical", message=f"alert {n}", key=f"k{n}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "must be an http:// or https:// URL, not file://"),
        ("ftp://user:s3cret@example.com/x", "must be an http:// or https:// URL, not ftp://"),
        ("/just/a/path", "must be an http:// or https:// URL, not a path"),
        ("http://", "must name a host"),
        ("http://[::1", "not a valid URL"),
        ("https://:s3cret@/x", "must name a host"),
    ],
)
def test_only_http_urls_with_a_host(url: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        WolfParams(webhook_url=url)
    [error] = raised.value.errors()
    assert message in error["msg"] and "s3cret" not in error["msg"]


async def test_a_same_host_307_is_followed_with_the_body(endpoint: Endpoint) -> None:
    h = wolf(endpoint.url("/same-307"))
    await h.start()
    await h.feed("risk.alert.triggered", alert(1), source="RSK")
    await h.stop()
    assert [body["key"] for body in endpoint.posted("/ok")] == ["k1"]
    assert h.payloads("system.alert.delivered")[0]["channels"] == ["webhook"]


@pytest.mark.parametrize("path", ["/same-302", "/other-302", "/other-307", "/to-file", "/loop"])
async def test_other_redirects_are_failed_attempts(
    endpoint: Endpoint, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    h = wolf(endpoint.url(path), webhook_retries=1)
    with caplog.at_level(logging.WARNING):
        await h.start()
        await h.feed("risk.alert.triggered", alert(1), source="RSK")
        await h.stop()
    assert [(m, p) for m, p, _ in endpoint.requests if p != path] == [], "nothing else was requested"
    assert h.payloads("system.alert.delivered")[0]["failed"] == ["webhook"]
    assert h.bot.stats()["webhookErrors"] == 2
    warnings = [r.getMessage() for r in caplog.records if "webhook attempt" in r.getMessage()]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    expected = {
        "/same-302": "HTTP 302 redirect not followed",
        "/other-302": "HTTP 302 redirect not followed",
        "/other-307": f"HTTP 307 redirect to http://localhost:{endpoint.port} refused",
        "/to-file": "must be an http:// or https:// URL, not file://",
        "/loop": "more than 3 redirects",
    }[path]
    assert expected in warnings[0], warnings


async def test_url_secrets_stay_out_of_the_logs(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://hook-user:s3cret@127.0.0.1:{endpoint.port}/fail/SECRET-PATH?token=t0ken"
    h = wolf(url, webhook_retries=1)
    with caplog.at_level(logging.DEBUG):
        await h.start()
        await h.feed("risk.alert.triggered", alert(1), source="RSK")
        await h.stop()
    assert endpoint.requests, "the endpoint was called"
    text = caplog.text
    assert f"to http://127.0.0.1:{endpoint.port} failed: HTTP 500 Internal Server Error" in text
    for secret in ("s3cret", "SECRET-PATH", "t0ken", "hook-user"):
        assert secret not in text
    assert "Traceback" not in text


async def test_a_server_that_never_answers_times_out(caplog: pytest.LogCaptureFixture) -> None:
    with Endpoint(delay_s=3) as slow:
        h = wolf(slow.url("/slow"), webhook_timeout_s=0.2)
        with caplog.at_level(logging.WARNING):
            await h.start()
            await h.feed("risk.alert.triggered", alert(1), source="RSK")
            await h.stop()
    assert h.payloads("system.alert.delivered")[0]["failed"] == ["webhook"]
    assert any("ReadTimeout" in r.getMessage() or "TimeoutError" in r.getMessage() for r in caplog.records)


async def test_alerts_queued_when_the_host_cancels_the_worker_are_sent_by_stop(endpoint: Endpoint) -> None:
    """The host cancels a bot's background tasks, then calls stop(): what is queued must still go."""
    h = wolf(endpoint.url("/slow"), drain_timeout_s=3)
    await h.start()
    for n in range(4):
        await h.feed("risk.alert.triggered", alert(n), source="RSK")
    for task in h.ctx.tasks:  # what BotRunner._stop_bot does before bot.stop()
        task.cancel()
    await asyncio.gather(*h.ctx.tasks, return_exceptions=True)
    await h.stop()
    assert {body["key"] for body in endpoint.posted("/slow")} == {"k0", "k1", "k2", "k3"}
    assert h.bot.stats()["webhookDropped"] == 0
    assert len(h.payloads("system.alert.delivered")) == 4


async def test_alerts_not_sent_within_the_drain_timeout_are_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Endpoint(delay_s=2) as slow:
        h = wolf(slow.url("/slow"), drain_timeout_s=0.3, webhook_timeout_s=5)
        with caplog.at_level(logging.WARNING):
            await h.start()
            for n in range(3):
                await h.feed("risk.alert.triggered", alert(n), source="RSK")
            await h.stop()
    assert h.bot.stats()["webhookDropped"] == 3  # one cut while being sent, two still queued
    [line] = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert line == "webhook: 3 alert(s) not delivered within drain_timeout_s=0.3s at stop: dropped"
