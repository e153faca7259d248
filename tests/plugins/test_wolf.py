"""WLF: which events alert, de-duplication, the JSON-lines file, and webhook retries on a real server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec
import pytest
from citarion_bots.wolf import WolfBot, alert_record

from citarion_host.events import Event, catalog
from citarion_host.payloads import BotLifecycle, DeadLetter, HandlerFailure, Order, RiskAlert
from citarion_host.testing import BotHarness

PUBLISH = ["system.alert.>"]


def wolf(**params: Any) -> BotHarness:
    return BotHarness(WolfBot, {"console": "off", **params}, bot_id="wolf", code="WLF", publish=PUBLISH)


def drawdown(bot: str = "grid") -> RiskAlert:
    return RiskAlert(
        kind="drawdown",
        severity="critical",
        message=f"{bot}: drawdown 12%",
        bot_id=bot,
        key=f"drawdown:{bot}",
    )


def at(event: Event, seconds: float) -> Event:
    return msgspec.structs.replace(event, timestamp=1_700_000_000_000 + int(seconds * 1000))


def delivered(h: BotHarness) -> list[dict[str, Any]]:
    return h.payloads("system.alert.delivered")


async def test_deduplicates_a_key_within_the_window() -> None:
    h = wolf(dedup_window_s=60)
    first = catalog.make("risk.alert.triggered", drawdown(), source="RSK")
    await h.feed_event(at(first, 0))
    await h.feed_event(at(first, 30))  # same key, 30 s later: suppressed
    await h.feed_event(at(catalog.make("risk.alert.triggered", drawdown("dca"), source="RSK"), 31))
    await h.feed_event(at(first, 61))  # the window has passed: page again
    assert [d["key"] for d in delivered(h)] == ["drawdown:grid", "drawdown:dca", "drawdown:grid"]
    assert h.bot.stats()["suppressed"] == 1
    assert all(e.priority == "high" and e.source == "WLF" for e in h.published)


async def test_filters_by_topic_severity_and_skips_its_own_events() -> None:
    h = wolf(min_severity="warning")
    await h.feed(
        "risk.alert.resolved",
        RiskAlert(kind="drawdown", severity="info", message="cleared", key="k"),
        source="RSK",
    )
    await h.feed(
        "trading.order.filled",
        Order(order_id="1", symbol="X", exchange="x", side="BUY", type="MARKET", quantity=1, status="FILLED"),
        source="EXC",
    )
    await h.feed("system.alert.delivered", {"key": "x"}, source="WLF")
    assert h.published == []
    await h.feed("risk.block.set", {"botId": "grid", "reason": "drawdown 12%"}, source="RSK")
    assert delivered(h)[0]["kind"] == "block_set" and delivered(h)[0]["botId"] == "grid"


@pytest.mark.parametrize(
    ("topic", "payload", "severity", "kind", "key", "text"),
    [
        (
            "trading.order.rejected",
            Order(
                order_id="g-7",
                symbol="BTCUSDT",
                exchange="binance",
                side="BUY",
                type="MARKET",
                quantity=1.5,
                status="REJECTED",
                bot_id="grid",
                reason="insufficient cash",
            ),
            "warning",
            "order_rejected",
            "order_rejected:grid:insufficient cash",
            "order g-7 (BUY 1.5 binance:BTCUSDT) of grid rejected: insufficient cash",
        ),
        (
            "system.bot.failed",
            BotLifecycle(bot_id="grid", code="GRD", state="failed", reason="ZeroDivisionError"),
            "critical",
            "bot_failed",
            "bot_failed:grid",
            "bot grid (GRD) failed: ZeroDivisionError",
        ),
        (
            "system.bot.stuck",
            BotLifecycle(bot_id="grid", code="GRD", state="stuck", reason="handling one event for 31 s"),
            "critical",
            "bot_stuck",
            "bot_stuck:grid",
            "bot grid (GRD) stuck: handling one event for 31 s",
        ),
        (
            "system.handler.failed",
            HandlerFailure(
                subscriber="s",
                pattern="p",
                event_id="e",
                event_topic="t.a.b",
                error_type="KeyError",
                error="x",
            ),
            "warning",
            "handler_failed",
            "handler_failed:s:KeyError",
            "handler s failed on t.a.b: KeyError: x",
        ),
        (
            "system.deadletter.malformed",
            DeadLetter(reason="malformed", error="bad json", original="{"),
            "warning",
            "dead_letter",
            "dead_letter:malformed:bad json",
            "dead letter (malformed): bad json",
        ),
        (
            "risk.block.cleared",
            {"botId": "dca", "reason": "cleared: exposure"},
            "info",
            "block_cleared",
            "block_cleared:dca",
            "risk.block.cleared: cleared: exposure",
        ),
    ],
)
def test_alert_records(topic: str, payload: Any, severity: str, kind: str, key: str, text: str) -> None:
    record = alert_record(catalog.make(topic, payload, source="X", metadata={"dataTime": 5}))
    assert (record["severity"], record["kind"], record["key"], record["message"]) == (
        severity,
        kind,
        key,
        text,
    )
    assert record["topic"] == topic and record["dataTime"] == 5


async def test_appends_json_lines_and_logs_to_the_console(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "alerts" / "wolf.jsonl"
    h = wolf(console="log", jsonl_path=str(path))
    with caplog.at_level("INFO"):
        await h.feed("risk.alert.triggered", drawdown(), source="RSK")
        await h.feed("risk.alert.triggered", drawdown("dca"), source="RSK")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["key"] for line in lines] == ["drawdown:grid", "drawdown:dca"]
    assert lines[0]["severity"] == "critical" and lines[0]["source"] == "RSK"
    assert delivered(h)[0]["channels"] == ["console", "file"] and delivered(h)[0]["failed"] == []
    assert any(
        "ALERT critical [drawdown] grid: drawdown 12%" in r.getMessage() and r.levelname == "ERROR"
        for r in caplog.records
    )


async def test_stdout_console(capsys: pytest.CaptureFixture[str]) -> None:
    h = wolf(console="stdout")
    await h.feed("risk.alert.triggered", drawdown(), source="RSK")
    assert json.loads(capsys.readouterr().out)["key"] == "drawdown:grid"


class Hook:
    """A real HTTP endpoint on 127.0.0.1 that fails the first ``failures`` POSTs with 500."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append(json.loads(body))
                status = 500 if len(hook.bodies) <= hook.failures else 200
                hook.statuses.append(status)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> Hook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def flaky_hook() -> Iterator[Hook]:
    with Hook(failures=1) as hook:
        yield hook


async def test_webhook_retries_after_a_failed_first_attempt(flaky_hook: Hook) -> None:
    h = wolf(webhook_url=flaky_hook.url, webhook_retries=3, webhook_backoff_s=0.01, webhook_timeout_s=2)
    await h.start()
    await h.feed("risk.alert.triggered", drawdown(), source="RSK")
    await h.stop()  # drains the webhook queue
    assert flaky_hook.statuses == [500, 200]
    assert flaky_hook.bodies[0] == flaky_hook.bodies[1] and flaky_hook.bodies[0]["key"] == "drawdown:grid"
    (report,) = delivered(h)
    assert report["channels"] == ["webhook"] and report["failed"] == []
    assert h.bot.stats()["webhookErrors"] == 1 and h.bot.stats()["webhookOk"] == 1


async def test_webhook_gives_up_after_the_retries() -> None:
    with Hook(failures=99) as hook:
        h = wolf(webhook_url=hook.url, webhook_retries=2, webhook_backoff_s=0.01, jsonl_path=None)
        await h.feed("risk.alert.triggered", drawdown(), source="RSK")  # no start(): the worker starts lazily
        await h.stop()
    assert hook.statuses == [500, 500, 500]
    assert delivered(h)[0]["failed"] == ["webhook"] and delivered(h)[0]["channels"] == []


async def test_an_alert_file_that_cannot_be_written_fails_that_channel_not_the_bot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk under ``jsonl_path`` (``/dev/full``) raised out of the handler: the bot failed,
    was rolled back and restarted into the same error, and no alert reached the console or the
    webhook any more. Now the file is one failed channel: the alert still reaches the others,
    ``system.alert.delivered`` lists ``file`` as failed, ``fileErrors`` counts it, one error line says
    so, and one info line when the file works again."""
    path = tmp_path / "alerts.jsonl"
    with Hook(failures=0) as hook, caplog.at_level("INFO"):
        h = wolf(console="log", jsonl_path="/dev/full", webhook_url=hook.url, webhook_timeout_s=2)
        await h.start()
        await h.feed("risk.alert.triggered", drawdown(), source="RSK")
        await h.feed("risk.alert.triggered", drawdown("dca"), source="RSK")
        h.bot.params.jsonl_path = str(path)  # the disk has room again
        await h.feed("risk.alert.triggered", drawdown("pairs"), source="RSK")
        await h.stop()
    assert [b["key"] for b in hook.bodies] == ["drawdown:grid", "drawdown:dca", "drawdown:pairs"]
    reports = delivered(h)
    assert [(r["channels"], r["failed"]) for r in reports] == [
        (["console", "webhook"], ["file"]),
        (["console", "webhook"], ["file"]),
        (["console", "file", "webhook"], []),
    ]
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["drawdown:pairs"]
    assert h.bot.stats()["fileErrors"] == 2
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "alert file" in r.getMessage()]
    assert said == [
        ("ERROR", "alert file cannot be written: alerts go on to the other channels"),
        ("INFO", "alert file written again"),
    ]
