"""The OHLCV CSV format lumi-csv replays: parsing with errors that name the file and the line.

Format (docs/bots.md):

* UTF-8 text; the first non-blank, non-comment line is the header naming the eight columns
  ``timestamp,symbol,exchange,open,high,low,close,volume`` (in any order; extra columns are an error,
  so a misspelt one is not silently dropped);
* blank lines and lines starting with ``#`` are skipped;
* ``timestamp`` is the bar's open time: Unix milliseconds (digits only) or ISO 8601
  (``2023-11-14T22:13:20Z``; without an offset it is taken as UTC);
* ``symbol`` and ``exchange`` are topic tokens: letters, digits, ``_`` and ``-``;
* prices are finite and > 0 with low <= min(open, close) and high >= max(open, close); volume >= 0;
* each (exchange, symbol) series has strictly increasing timestamps. Series may be interleaved or
  listed one after another: the replay sorts all bars by time (stable).

``python -m citarion_bots.csvfeed`` rewrites the packaged sample from :data:`SAMPLE_SPEC`.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from .synthetic import Bar, PumpSpec, SyntheticSpec, generate

__all__ = ["COLUMNS", "SAMPLE_PATH", "SAMPLE_SPEC", "CsvFormatError", "format_csv", "load_csv", "parse_csv"]

COLUMNS = ("timestamp", "symbol", "exchange", "open", "high", "low", "close", "volume")
SAMPLE_PATH = Path(__file__).parent / "data" / "sample_ohlcv.csv"
#: The spec the packaged sample was generated from (a test keeps the two in step).
SAMPLE_SPEC = SyntheticSpec(
    seed=11,
    symbols=["BTCUSDT", "SOLUSDT"],
    exchanges=["binance", "bybit"],
    bars=120,
    pumps=[PumpSpec(symbol="SOLUSDT", start_bar=80)],
)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


class CsvFormatError(ValueError):
    """A CSV line breaks the format. ``str()`` reads ``<file>:<line>: <what is wrong>``."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source}:{line}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


def _timestamp(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp {text!r} is neither Unix milliseconds nor ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {text!r}")
    return value


def _bar(row: dict[str, str]) -> Bar:
    symbol, exchange = row["symbol"].strip(), row["exchange"].strip()
    for name, value in (("symbol", symbol), ("exchange", exchange)):
        if not _TOKEN.match(value):
            raise ValueError(
                f"{name} {value!r} must be letters, digits, '_' or '-' (it becomes a topic token)"
            )
    o, h, low, c, v = (
        _number(name, row[name].strip()) for name in ("open", "high", "low", "close", "volume")
    )
    if min(o, h, low, c) <= 0:
        raise ValueError("prices must be > 0")
    if v < 0:
        raise ValueError(f"volume must be >= 0, got {v}")
    if low > min(o, c) or h < max(o, c):
        raise ValueError(f"high/low must bound open/close (open={o}, high={h}, low={low}, close={c})")
    return Bar(_timestamp(row["timestamp"].strip()), symbol, exchange, o, h, low, c, v)


def parse_csv(text: str, source: str = "<csv>") -> list[Bar]:
    """Parse CSV text into bars sorted by time; raises :class:`CsvFormatError` at the first bad line."""
    lines = text.splitlines()
    rows = [
        (n, line)
        for n, line in enumerate(lines, start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not rows:
        raise CsvFormatError(source, 1, f"empty file: expected the header {','.join(COLUMNS)}")
    header_line, header = rows[0]
    names = [name.strip() for name in next(csv.reader([header]))]
    missing = [c for c in COLUMNS if c not in names]
    extra = [c for c in names if c not in COLUMNS]
    if missing or extra or len(names) != len(COLUMNS):
        problems = [f"missing {missing}" if missing else "", f"unknown {extra}" if extra else ""]
        detail = "; ".join(p for p in problems if p) or "repeated columns"
        raise CsvFormatError(source, header_line, f"header must name {','.join(COLUMNS)} ({detail})")
    bars: list[Bar] = []
    last: dict[tuple[str, str], int] = {}
    for number, line in rows[1:]:
        cells = next(csv.reader([line]))
        if len(cells) != len(names):
            raise CsvFormatError(source, number, f"expected {len(names)} fields, got {len(cells)}")
        try:
            bar = _bar(dict(zip(names, cells, strict=True)))
        except ValueError as exc:
            raise CsvFormatError(source, number, str(exc)) from None
        key = (bar.exchange, bar.symbol)
        if key in last and bar.time <= last[key]:
            raise CsvFormatError(
                source,
                number,
                f"timestamp {bar.time} of {bar.exchange}:{bar.symbol} is not after {last[key]}",
            )
        last[key] = bar.time
        bars.append(bar)
    bars.sort(key=lambda bar: bar.time)  # stable: same-time bars keep the file's order
    return bars


def load_csv(path: str | Path) -> list[Bar]:
    """Read and parse a CSV file; errors name the file and the line."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CsvFormatError(str(file), 0, f"cannot read: {exc}") from None
    return parse_csv(text, str(file))


def format_csv(bars: Iterable[Bar]) -> str:
    """Bars as CSV text in the format above (Unix ms timestamps)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for b in bars:
        writer.writerow(
            [
                b.time,
                b.symbol,
                b.exchange,
                repr(b.open),
                repr(b.high),
                repr(b.low),
                repr(b.close),
                repr(b.volume),
            ]
        )
    return out.getvalue()


def main() -> None:  # pragma: no cover - maintenance helper
    SAMPLE_PATH.write_text(format_csv(generate(SAMPLE_SPEC)), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    main()
