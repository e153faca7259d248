"""WLF (Wolf), the alert system: turns risk, trading and host events into notifications for people.

Which events become alerts: those matching ``patterns`` (risk alerts and blocks, order rejections,
failed bots and handlers, dead letters by default) at or above ``min_severity``. Each becomes one
flat record (see :func:`alert_record`) with a de-duplication key: the RiskAlert's own ``key`` when
it has one, else one derived from kind, bot and reason. A key already delivered within
``dedup_window_s`` (event time) is suppressed: a flapping condition pages once, not fifty times.

Channels, each optional:

* console: the bot's logger (``console = "log"``, level by severity) or stdout lines;
* ``jsonl_path``: one JSON object per line, appended (an audit trail a script can read back); a file
  that cannot be written fails this channel only (``fileErrors``), never the bot;
* ``webhook_url``: HTTP POST of the JSON record, by a background worker so a slow or failing
  endpoint never delays the other channels. Failures (connection errors, timeouts, HTTP >= 400, a
  refused redirect) are retried ``webhook_retries`` times with exponential backoff
  (``webhook_backoff_s`` x 2^attempt).

The webhook goes through httpx (async, no thread per request) with rules a URL from a config must
not be able to bend (docs/security.md):

* ``http://`` and ``https://`` only, checked with the params (``file://``, ``ftp://``... are config
  errors), and again for every redirect;
* explicit timeouts: connect, read, write and pool each ``webhook_timeout_s``, and the whole attempt
  too (a server trickling bytes cannot hold it);
* redirects are not followed blindly: only 307/308 (which keep the POST and its body) to the same
  host, at most ``_MAX_REDIRECTS``, never from https down to http. A 302 to an internal address
  is a failed attempt, not a request to that address;
* logs name the endpoint by its origin (``https://hooks.example.com``) only: user info, path and
  query of a webhook URL are often the secret;
* at ``stop()`` the alerts still queued are sent within ``drain_timeout_s``; those that could not
  be are counted (``webhookDropped``) and logged, never dropped silently. The host cancels a bot's
  background tasks before calling ``stop()``, so ``stop()`` delivers what is left itself.

After an alert's channels are done WLF publishes ``system.alert.delivered`` (dict: key, kind,
severity, message, eventId, channels, failed). It reads ``system.>`` too, so it skips events whose
source is its own code.

Its state (``docs/state.md``) is the de-duplication window (the last delivery time of each key) and
its counters: a restarted WLF does not page again for what it paged a second ago. Alerts still queued
for the webhook are not state: ``stop()`` delivers them (or counts them dropped) before a restart. The
channels are side effects the host cannot hold back: after a rollback (a failed handler) or a host
restart, the alerts of the events handled again since the last snapshot (at most ``[state] every_s``
of them, typically) reach console, file and webhook a second time; their ``system.alert.delivered``
events are held back like every replayed output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import httpx
import msgspec
from pydantic import Field, field_validator

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import BotLifecycle, DeadLetter, HandlerFailure, Order, RiskAlert
from citarion_host.redact import mask_text, url_origin
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
    "system.bot.stuck",
    "system.handler.failed",
    "system.deadletter.>",
]
_SCHEMES = ("http", "https")
#: Same-host 307/308 redirects followed per attempt.
_MAX_REDIRECTS = 3


class WebhookError(Exception):
    """One webhook attempt failed for a reason of ours (status, redirect); retried like the others."""


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
    #: Below the host's default drain_timeout_s (10 s), which bounds the whole stop(): the count of
    #: dropped alerts must be taken before the host gives up on the bot.
    drain_timeout_s: float = Field(default=5.0, ge=0)

    @field_validator("webhook_url")
    @classmethod
    def _http_only(cls, url: str | None) -> str | None:
        if url is not None:
            try:
                parsed = httpx.URL(url)
            except (httpx.InvalidURL, TypeError, ValueError):
                raise ValueError("not a valid URL") from None
            _check_url(parsed)
        return url


def _check_url(url: httpx.URL) -> None:
    """Raise ValueError unless ``url`` is http(s) with a host (the message never shows the URL)."""
    if url.scheme not in _SCHEMES:
        given = f"{url.scheme}://" if url.scheme else "a path"
        raise ValueError(f"must be an http:// or https:// URL, not {given}")
    if not url.host:
        raise ValueError("must name a host")


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
        severity = "critical" if p.state in ("failed", "stuck") else "warning"
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


class WolfState(msgspec.Struct, kw_only=True):
    """The de-duplication window (key -> event time of its last delivery) and the counters."""

    last_sent: dict[str, int] = {}
    counts: dict[str, int] = {}


class WolfBot(Bot[WolfParams]):
    type_name = "wolf"
    description = "WLF: alerts to console, JSON-lines file and webhook (retry/backoff), de-duplicated"
    State = WolfState

    def __init__(self, ctx: BotContext, params: WolfParams) -> None:
        super().__init__(ctx, params)
        self.last_sent: dict[str, int] = {}
        self.counts: Counter[str] = Counter()
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._worker: asyncio.Task[Any] | None = None
        self._current: dict[str, Any] | None = None  # the item being sent (re-sent at stop if cut)
        self._client: httpx.AsyncClient | None = None
        self._file_failing = False  # the alert file's last write failed (said once, until it works)

    async def start(self) -> None:
        self._ensure_worker()

    def _ensure_worker(self) -> None:
        if self.params.webhook_url and self._worker is None:
            # httpx logs every request's full URL at INFO; a webhook's path and query are often
            # the secret (a Slack-style URL), so its logger is held at WARNING.
            logging.getLogger("httpx").setLevel(max(logging.getLogger("httpx").level, logging.WARNING))
            timeout = self.params.webhook_timeout_s
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(connect=timeout, read=timeout, write=timeout, pool=timeout),
                follow_redirects=False,  # decided per response in _post, see the module docstring
                headers={"Content-Type": "application/json", "User-Agent": "citarion-wolf"},
            )
            self._worker = self.ctx.spawn(self._webhook_worker(), "webhook")

    async def stop(self) -> None:
        """Deliver what is queued within ``drain_timeout_s``; count and log what could not be."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        try:
            async with asyncio.timeout(self.params.drain_timeout_s):
                if worker.done() or worker.cancelling():  # the host cancels it before calling stop()
                    await asyncio.wait({worker})  # let it wind down; what it was sending is kept
                    await self._flush()
                else:
                    await self._queue.join()  # the worker is still at it
        except TimeoutError:
            pass
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
            self._count_dropped()
            if self._client is not None:
                client, self._client = self._client, None
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _flush(self) -> None:
        while self._current is not None or not self._queue.empty():
            if self._current is None:
                self._current = self._queue.get_nowait()
                self._queue.task_done()
            await self._send(self._current)
            self._current = None

    def _count_dropped(self) -> None:
        dropped = self._queue.qsize() + (self._current is not None)
        self._current = None
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
        if dropped:
            self.counts["webhook_dropped"] += dropped
            self.ctx.log.warning(
                "webhook: %d alert(s) not delivered within drain_timeout_s=%gs at stop: dropped",
                dropped,
                self.params.drain_timeout_s,
                extra={"endpoint": url_origin(self.params.webhook_url or ""), "dropped": dropped},
            )

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
        channels, failed = self._local(record)
        if self.params.webhook_url:
            self._ensure_worker()
            await self._queue.put({"record": record, "channels": channels, "failed": failed})
        else:
            await self._delivered(record, channels, failed)

    def _local(self, record: dict[str, Any]) -> tuple[list[str], list[str]]:
        """The console and the file: the channels that took ``record``, and those that failed."""
        line = json.dumps(record, sort_keys=True, default=str)
        channels: list[str] = []
        failed: list[str] = []
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
            if self._append(line):
                channels.append("file")
            else:
                failed.append("file")
        return channels, failed

    def _append(self, line: str) -> bool:
        """Append ``line`` to the alert file. A file that cannot be written (a full disk, a path made
        read-only) fails that channel, as a failing webhook does, not the bot: the alert still reaches
        the console and the webhook, ``system.alert.delivered`` lists ``file`` as failed, and
        ``fileErrors`` counts it. One error line when the file starts failing, one when it works again
        (a bot that failed instead would be restarted into the same error, alerting nobody)."""
        path = Path(self.params.jsonl_path or "")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        except OSError as exc:
            self.counts["file_errors"] += 1
            if not self._file_failing:
                self._file_failing = True
                self.ctx.log.error(
                    "alert file cannot be written: alerts go on to the other channels",
                    extra={"path": str(path), "error": exc.strerror or str(exc)},
                )
            return False
        if self._file_failing:
            self._file_failing = False
            self.ctx.log.info("alert file written again", extra={"path": str(path)})
        return True

    async def _webhook_worker(self) -> None:
        while True:
            self._current = await self._queue.get()
            try:
                await self._send(self._current)
            except asyncio.CancelledError:
                self._queue.task_done()
                raise  # cancelled mid-send: _current stays, and stop() sends it again
            self._current = None
            self._queue.task_done()

    async def _send(self, item: dict[str, Any]) -> None:
        try:
            ok = await self._post_with_retry(item["record"])
            channels = item["channels"] + (["webhook"] if ok else [])
            await self._delivered(item["record"], channels, item["failed"] + ([] if ok else ["webhook"]))
        except Exception as exc:  # one line, no traceback: it could carry the URL
            self.ctx.log.error("webhook delivery failed: %s", _describe(exc, self.params.webhook_url or ""))

    async def _post_with_retry(self, record: dict[str, Any]) -> bool:
        url, p = self.params.webhook_url or "", self.params
        endpoint = url_origin(url)
        body = json.dumps(record, sort_keys=True, default=str).encode()
        for attempt in range(p.webhook_retries + 1):
            try:
                async with asyncio.timeout(p.webhook_timeout_s):  # the whole attempt, redirects included
                    await self._post(url, body)
                self.counts["webhook_ok"] += 1
                return True
            except (httpx.HTTPError, WebhookError, TimeoutError, OSError, ValueError) as exc:
                self.counts["webhook_errors"] += 1
                self.ctx.log.warning(
                    "webhook attempt %d/%d to %s failed: %s",
                    attempt + 1,
                    p.webhook_retries + 1,
                    endpoint,
                    _describe(exc, url),
                )
                if attempt < p.webhook_retries:
                    await asyncio.sleep(p.webhook_backoff_s * 2**attempt)
        self.ctx.log.error("webhook to %s gave up on alert %s", endpoint, record["key"])
        return False

    async def _post(self, url: str, body: bytes) -> None:
        """One POST, following at most ``_MAX_REDIRECTS`` same-host 307/308 redirects."""
        if self._client is None:
            raise WebhookError("the bot is stopped")
        target = httpx.URL(url)
        for _ in range(_MAX_REDIRECTS + 1):
            response = await self._client.post(target, content=body)
            await response.aclose()
            if not response.is_redirect:
                if response.status_code >= 400:
                    raise WebhookError(f"HTTP {response.status_code} {response.reason_phrase}")
                return
            location = response.headers.get("location", "")
            if response.status_code not in (307, 308) or not location:
                raise WebhookError(
                    f"HTTP {response.status_code} redirect not followed (only same-host 307/308 are)"
                )
            next_url = target.join(location)
            _check_url(next_url)
            if next_url.host != target.host or (target.scheme == "https" and next_url.scheme != "https"):
                raise WebhookError(
                    f"HTTP {response.status_code} redirect to {url_origin(str(next_url))} refused"
                    " (another host, or https to http)"
                )
            target = next_url
        raise WebhookError(f"more than {_MAX_REDIRECTS} redirects")

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
            "webhookDropped": self.counts["webhook_dropped"],
            "fileErrors": self.counts["file_errors"],
        }


def _describe(error: BaseException, url: str) -> str:
    """``Type: message`` in one line, the webhook URL replaced by its origin, credentials masked."""
    text = str(error) or type(error).__name__
    if url:
        text = text.replace(url, url_origin(url))
    text = " ".join(mask_text(text).split())
    return f"{type(error).__name__}: {text}" if not isinstance(error, WebhookError) else text


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [WolfBot]
