"""WLF (Wolf), the alert system: turns risk, trading and host events into notifications for people.

Which events become alerts: those matching ``patterns`` (risk alerts and blocks, order rejections,
failed bots and handlers, dead letters by default) at or above ``min_severity``. Each becomes one
flat record (see :func:`alert_record`) with a de-duplication key: the RiskAlert's own ``key`` when
it has one, else one derived from kind, bot and reason. A key already delivered within
``dedup_window_s`` (event time) is suppressed: a flapping condition pages once, not fifty times.

Channels, each optional:

* console: the bot's logger (``console = "log"``, level by severity) or stdout lines;
* ``jsonl_path``: one JSON object per line, appended (an audit trail a script can read back);
* ``webhook_url``: HTTP POST of the JSON record, by a background worker so a slow or failing
  endpoint never delays the other channels. Failures (connection errors, HTTP >= 400) are retried
  ``webhook_retries`` times with exponential backoff (``webhook_backoff_s`` x 2^attempt). The POST
  uses stdlib ``urllib`` in a worker thread (``asyncio.to_thread``).

After an alert's channels are done WLF publishes ``system.alert.delivered`` (dict: key, kind,
severity, message, eventId, channels, failed). It reads ``system.>`` too, so it skips events whose
source is its own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from citarion_host.bot import Bot
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import BotLifecycle, DeadLetter, HandlerFailure, Order, RiskAlert
from citarion_host.topics import matches

from .common import StrictParams

__all__ = ["WolfBot", "WolfParams", "alert_record", "citarion_bot_types"]

Severity = Literal["info", "warning", "critical"]
_RANK = {"info": 0, "warning": 1, "critical": 2}
_LEVEL = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}
DEFAULT_PATTERNS = [
    "risk.alert.>",
    "risk.block.>",
    "trading.order.rejected",
    "system.bot.failed",
    "system.bot.error",
    "system.handler.failed",
    "system.deadletter.>",
]


class WolfParams(StrictParams):
    patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_PATTERNS))
    min_severity: Severity = "info"
    dedup_window_s: float = Field(default=60.0, ge=0)
    console: Literal["log", "stdout", "off"] = "log"
    jsonl_path: str | None = None
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    webhook_retries: int = Field(default=3, ge=0)
    webhook_backoff_s: float = Field(default=0.5, ge=0)
    drain_timeout_s: float = Field(default=10.0, ge=0)


def alert_record(event: Event) -> dict[str, Any]:
    """The notification for ``event``: severity, kind, message, key and where it came from."""
    p = event.payload
    bot_id = symbol = None
    if isinstance(p, RiskAlert):
        severity, kind, message, bot_id, symbol = p.severity, p.kind, p.message, p.bot_id, p.symbol
        key = p.key or f"{p.kind}:{p.bot_id or ''}:{p.symbol or ''}"
    elif isinstance(p, Order):
        severity, kind, bot_id, symbol = "warning", "order_rejected", p.bot_id, p.symbol
        order = f"{p.order_id} ({p.side} {p.quantity:g} {p.exchange}:{p.symbol})"
        message = f"order {order} of {p.bot_id} rejected: {p.reason}"
        key = f"order_rejected:{p.bot_id}:{p.reason}"
    elif isinstance(p, BotLifecycle):
        severity = "critical" if p.state == "failed" else "warning"
        kind, bot_id = f"bot_{p.state}", p.bot_id
        message = f"bot {p.bot_id} ({p.code}) {p.state}: {p.reason or 'no reason given'}"
        key = f"bot_{p.state}:{p.bot_id}"
    elif isinstance(p, HandlerFailure):
        severity, kind = "warning", "handler_failed"
        message = f"handler {p.subscriber} failed on {p.event_topic}: {p.error_type}: {p.error}"
        key = f"handler_failed:{p.subscriber}:{p.error_type}"
    elif isinstance(p, DeadLetter):
        severity, kind = "warning", "dead_letter"
        message = f"dead letter ({p.reason}): {p.error}"
        key = f"dead_letter:{p.reason}:{p.error[:80]}"
    else:
        body = p if isinstance(p, dict) else {}
        bot_id = body.get("botId") if isinstance(body.get("botId"), str) else None
        cleared = event.topic.endswith(".cleared")
        severity = "info" if cleared else "warning"
        kind = event.topic.split(".", 1)[1].replace(".", "_")  # risk.block.set -> block_set
        message = f"{event.topic}: " + str(body.get("reason") or body.get("message") or body or "")
        key = f"{kind}:{bot_id or body.get('key') or ''}"
    return {
        "time": event.timestamp,
        "dataTime": event.metadata.get("dataTime"),
        "topic": event.topic,
        "source": event.source,
        "eventId": event.id,
        "severity": severity,
        "kind": kind,
        "message": message,
        "key": key,
        "botId": bot_id,
        "symbol": symbol,
    }


class WolfBot(Bot):
    type_name = "wolf"
    description = "WLF: alerts to console, JSON-lines file and webhook (retry/backoff), de-duplicated"
    Params = WolfParams
    params: WolfParams

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self.last_sent: dict[str, int] = {}
        self.counts: Counter[str] = Counter()
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._worker: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        self._ensure_worker()

    def _ensure_worker(self) -> None:
        if self.params.webhook_url and self._worker is None:
            self._worker = self.ctx.spawn(self._webhook_worker(), "webhook")

    async def stop(self) -> None:
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.params.drain_timeout_s):
                await self._queue.join()
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None

    async def handle(self, event: Event) -> None:
        if event.source == self.ctx.code or not any(matches(p, event.topic) for p in self.params.patterns):
            return
        record = alert_record(event)
        if _RANK[record["severity"]] < _RANK[self.params.min_severity]:
            return
        previous = self.last_sent.get(record["key"])
        if previous is not None and event.timestamp - previous < self.params.dedup_window_s * 1000:
            self.counts["suppressed"] += 1
            return
        self.last_sent[record["key"]] = event.timestamp
        channels = self._local(record)
        if self.params.webhook_url:
            self._ensure_worker()
            await self._queue.put({"record": record, "channels": channels})
        else:
            await self._delivered(record, channels, [])

    def _local(self, record: dict[str, Any]) -> list[str]:
        line = json.dumps(record, sort_keys=True, default=str)
        channels = []
        if self.params.console == "log":
            self.ctx.log.log(
                _LEVEL[record["severity"]],
                "ALERT %s [%s] %s",
                record["severity"],
                record["kind"],
                record["message"],
            )
            channels.append("console")
        elif self.params.console == "stdout":
            sys.stdout.write(line + "\n")
            channels.append("console")
        if self.params.jsonl_path:
            path = Path(self.params.jsonl_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
            channels.append("file")
        return channels

    async def _webhook_worker(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                ok = await self._post_with_retry(item["record"])
                channels = item["channels"] + (["webhook"] if ok else [])
                await self._delivered(item["record"], channels, [] if ok else ["webhook"])
            except Exception:
                self.ctx.log.exception("webhook delivery crashed")
            finally:
                self._queue.task_done()

    async def _post_with_retry(self, record: dict[str, Any]) -> bool:
        url, p = self.params.webhook_url or "", self.params
        body = json.dumps(record, sort_keys=True, default=str).encode()
        for attempt in range(p.webhook_retries + 1):
            try:
                await asyncio.to_thread(_post, url, body, p.webhook_timeout_s)
                self.counts["webhook_ok"] += 1
                return True
            except (OSError, ValueError) as exc:
                self.counts["webhook_errors"] += 1
                self.ctx.log.warning(
                    "webhook attempt %d/%d failed: %s", attempt + 1, p.webhook_retries + 1, exc
                )
                if attempt < p.webhook_retries:
                    await asyncio.sleep(p.webhook_backoff_s * 2**attempt)
        self.ctx.log.error("webhook gave up on alert %s", record["key"])
        return False

    async def _delivered(self, record: dict[str, Any], channels: list[str], failed: list[str]) -> None:
        self.counts["delivered"] += 1
        payload = {k: record[k] for k in ("key", "kind", "severity", "message", "eventId", "botId")}
        payload.update(channels=channels, failed=failed)
        await self.ctx.publish("system.alert.delivered", payload, priority="high")

    def stats(self) -> dict[str, Any]:
        return {
            "delivered": self.counts["delivered"],
            "suppressed": self.counts["suppressed"],
            "webhookOk": self.counts["webhook_ok"],
            "webhookErrors": self.counts["webhook_errors"],
        }


def _post(url: str, body: bytes, timeout: float) -> int:
    """One blocking POST (runs in a worker thread). HTTP >= 400 raises, so it is retried."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "citarion-wolf"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        exc.close()  # release the error response's socket now, not at garbage collection
        raise OSError(f"HTTP {exc.code} {exc.reason}") from None


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [WolfBot]
