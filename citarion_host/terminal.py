"""What ``citarion-host run`` shows in the terminal while it runs, and the summary at the end.

Two faces, chosen by whether stdout is a terminal:

* **a terminal** (rich): one live view redrawn in place: a progress bar over the replay, a per-bot
  table (state, handled, signals, orders, fills, PnL, drops, alerts), the risk alerts counted by kind
  with the last few shown, and the bots' own log lines counted with the last few shown (they used to
  flood the screen between progress lines; the host's own warnings still print above the view). At
  the end, the summary as a rich table with a totals row.
* **anything else** (a pipe, a file, CI): the plain, stable lines as before: a progress line every
  ``[host] progress_interval_s``, every log line, and ``monitor.format_summary``'s fixed-width table.
  ``--summary-json`` is the same either way.

Progress over the replay: a feed (a bot that publishes and subscribes to nothing) whose params have
``bars``, ``symbols`` and ``exchanges`` (``lumi-synthetic``) gives a total; its ``stats()["bars"]``
says how far it is. Other feeds show the count without a total.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from .monitor import SUMMARY_COLUMNS, TEXT_COLUMNS, RunMonitor, format_summary, summary_totals

if TYPE_CHECKING:
    from .host import Host

__all__ = ["LiveView", "is_terminal", "print_summary", "run_progress"]

_BOT_LOGGERS = "citarion.bot."
_SHOWN = 4  # last alerts / log lines shown


def is_terminal(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


async def run_progress(
    monitor: RunMonitor, host: Host, interval: float, out: TextIO, stop: asyncio.Event
) -> None:
    """Until ``stop``: the live view on a terminal, else a progress line every ``interval`` seconds."""
    if is_terminal(out):
        await LiveView(monitor, host, out).run(stop, min(interval, 0.5))
        return
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        print(monitor.progress_line(), file=out, flush=True)


def print_summary(summary: dict[str, Any], out: TextIO) -> None:
    """The summary: a rich table on a terminal, ``format_summary``'s plain text elsewhere."""
    if not is_terminal(out):
        print(format_summary(summary), file=out)
        return
    console = Console(file=out)
    table = Table(title="run summary", show_footer=True, header_style="bold")
    totals = summary_totals(summary)
    # Delivery columns only when a bot lost events: on a narrow terminal every column costs width.
    lossy = any(row["dropped"] for row in summary["bots"])
    columns = [c for c in SUMMARY_COLUMNS if lossy or c not in ("health", "dropped")]
    for column in columns:
        justify = "left" if SUMMARY_COLUMNS.index(column) < TEXT_COLUMNS else "right"
        table.add_column(column, footer=_cell(totals[column]), justify=justify)  # type: ignore[arg-type]
    for row in summary["bots"]:
        table.add_row(*(_styled(column, row[column]) for column in columns))
    console.print(table)
    events, seconds, rate = summary["events"], summary["seconds"], summary["events_per_s"]
    console.print(f"{events:,} events in {seconds:.2f}s = {rate:,} events/s through the bus")


def _cell(value: Any) -> str:
    return f"{value:+,.2f}" if isinstance(value, float) else str(value)


def _styled(column: str, value: Any) -> Text:
    text = _cell(value)
    if column == "pnl" and isinstance(value, float):
        return Text(text, style="green" if value > 0 else "red" if value < 0 else "")
    if column == "state":
        return Text(text, style="green" if value == "running" else "yellow" if value != "failed" else "red")
    if column in ("errors", "dropped") and value:
        return Text(text, style="red")
    if column == "health":
        return Text(text, style="green" if value == "ok" else "red")
    return Text(text)


class _BotLogs(logging.Handler):
    """While the live view runs: bot log lines counted (last few kept), others printed above it."""

    def __init__(self, console: Console, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.console = console
        self.counts: Counter[str] = Counter()
        self.recent: deque[str] = deque(maxlen=_SHOWN)
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.name.startswith(_BOT_LOGGERS):
                self.counts[record.levelname.lower()] += 1
                self.recent.append(f"{record.name.removeprefix(_BOT_LOGGERS)}: {record.getMessage()}")
            else:
                self.console.print(Text(self.format(record)), highlight=False)
        except Exception:  # a log line must never break the run
            self.handleError(record)


@contextlib.contextmanager
def _capture_logs(console: Console) -> Iterator[_BotLogs]:
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_citarion", False)]
    capture = _BotLogs(console, ours[0].formatter if ours else None)
    capture.setLevel(ours[0].level if ours else logging.NOTSET)
    for handler in ours:
        root.removeHandler(handler)
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for handler in ours:
            root.addHandler(handler)


class LiveView:
    """The rich live display of a run (see the module docstring)."""

    def __init__(self, monitor: RunMonitor, host: Host, out: TextIO) -> None:
        self.monitor = monitor
        self.host = host
        self.console = Console(file=out)
        self.progress = Progress(
            TextColumn("[bold]replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._task = self.progress.add_task("replay", total=None)
        self.logs: _BotLogs | None = None

    async def run(self, stop: asyncio.Event, refresh: float) -> None:
        with _capture_logs(self.console) as logs:
            self.logs = logs
            with Live(self.render(), console=self.console, auto_refresh=False, transient=False) as live:
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), refresh)
                    live.update(self.render(), refresh=True)
        if logs.counts:
            counted = ", ".join(f"{n} {level}" for level, n in logs.counts.most_common())
            self.console.print(f"bot log lines: {counted} (all of them: run with output to a pipe or a file)")

    def _feed_progress(self) -> tuple[int, int | None]:
        done, total, known = 0, 0, True
        for runner in self.host.runners.values():
            if runner.config.subscribe or runner.bot is None:
                continue
            done += int(runner.bot.stats().get("bars", 0) or 0)
            params = runner.bot.params
            bars, symbols, exchanges = (getattr(params, k, None) for k in ("bars", "symbols", "exchanges"))
            if isinstance(bars, int) and isinstance(symbols, list) and isinstance(exchanges, list):
                total += bars * len(symbols) * len(exchanges)
            else:
                known = False
        return done, total if known and total else None

    def render(self) -> Group:
        done, total = self._feed_progress()
        self.progress.update(self._task, completed=done, total=total)
        monitor = self.monitor
        rate = monitor.events_per_s()
        header = Text(f"{monitor.events:,} events  {rate:,.0f}/s  backend {self.host.bus.name}", style="bold")
        return Group(header, self.progress, self._table(), self._alerts())

    def _table(self) -> Table:
        table = Table(expand=False, header_style="bold", box=None, pad_edge=False)
        for name in (
            "bot",
            "code",
            "state",
            "handled",
            "signals",
            "orders",
            "fills",
            "pnl",
            "drops",
            "alerts",
        ):
            table.add_column(name, justify="left" if name in ("bot", "code", "state") else "right")
        for bot_id, runner in self.host.runners.items():
            figures = self.monitor.bots.get(bot_id)
            subscription = runner.subscription
            published = runner.published
            pnl = figures.pnl if figures else 0.0
            table.add_row(
                bot_id,
                runner.config.code,
                _styled("state", runner.state),
                f"{runner.handled:,}",
                str(published.get("signal", 0)),
                str(published.get("order", 0)),
                str(figures.fills if figures else 0),
                _styled("pnl", round(pnl, 2)),
                str(sum(subscription.dropped) if subscription is not None else 0),
                str((figures.alerts if figures else 0) + published.get("alert", 0)),
            )
        return table

    def _alerts(self) -> Group:
        lines: list[Text] = []
        kinds = self.monitor.alert_kinds
        if kinds:
            counted = "  ".join(f"{kind} ({severity}) x{n}" for (kind, severity), n in kinds.most_common())
            lines.append(Text(f"risk alerts: {sum(kinds.values())}  {counted}", style="yellow"))
            lines += [Text(f"  {line}", style="dim") for line in self.monitor.recent_alerts]
        logs = self.logs
        if logs is not None and logs.counts:
            counted = ", ".join(f"{n} {level}" for level, n in logs.counts.most_common())
            lines.append(Text(f"bot log lines: {counted}", style="cyan"))
            lines += [Text(f"  {line}", style="dim") for line in logs.recent]
        return Group(*lines)
