"""The CSV replay format: good files parse, bad lines fail with file and line named."""

from __future__ import annotations

from pathlib import Path

import pytest
from citarion_bots.csvfeed import SAMPLE_PATH, SAMPLE_SPEC, CsvFormatError, format_csv, load_csv, parse_csv
from citarion_bots.synthetic import generate

HEADER = "timestamp,symbol,exchange,open,high,low,close,volume\n"


def test_the_packaged_sample_is_the_documented_generator_output() -> None:
    bars = load_csv(SAMPLE_PATH)
    assert bars == list(generate(SAMPLE_SPEC))
    assert SAMPLE_PATH.read_text(encoding="utf-8") == format_csv(bars)


def test_unix_ms_and_iso_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "# a comment\n\n"
        "symbol,exchange,timestamp,open,high,low,close,volume\n"  # any column order
        "BTCUSDT,binance,1700000000000,100,101,99,100.5,2.5\n"
        "BTCUSDT,binance,2023-11-14T22:14:20Z,101,102,100,101.5,3\n"
        "ETHUSDT,binance,2023-11-14T22:13:20,10,11,9,10.5,0\n",
        encoding="utf-8",
    )
    bars = load_csv(path)
    assert [(b.symbol, b.time) for b in bars] == [
        ("BTCUSDT", 1_700_000_000_000),
        ("ETHUSDT", 1_700_000_000_000),  # no offset: UTC
        ("BTCUSDT", 1_700_000_060_000),
    ]
    assert bars[0].close == 100.5 and bars[0].volume == 2.5


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1700000000000,BTCUSDT,binance,100,101,99,abc,1", "close 'abc' is not a number"),
        (
            "yesterday,BTCUSDT,binance,100,101,99,100,1",
            "timestamp 'yesterday' is neither Unix milliseconds nor ISO 8601",
        ),
        ("1700000000000,BTCUSDT,binance,100,99,98,100,1", "high/low must bound open/close"),
        ("1700000000000,BTCUSDT,binance,100,101,99,100,-1", "volume must be >= 0"),
        ("1700000000000,BTCUSDT,binance,0,101,99,100,1", "prices must be > 0"),
        ("1700000000000,BTC.USDT,binance,100,101,99,100,1", "symbol 'BTC.USDT' must be letters"),
        ("1700000000000,BTCUSDT,binance,100,101,99", "expected 8 fields, got 6"),
        ("1700000000000,BTCUSDT,binance,100,101,99,100,nan", "volume must be finite"),
    ],
)
def test_a_bad_line_names_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        HEADER + "1699999940000,BTCUSDT,binance,100,101,99,100,1\n" + line + "\n", encoding="utf-8"
    )
    with pytest.raises(CsvFormatError) as caught:
        load_csv(path)
    assert str(caught.value).startswith(f"{path}:3: {reason}")
    assert caught.value.line == 3 and caught.value.source == str(path)


def test_header_and_order_errors() -> None:
    with pytest.raises(
        CsvFormatError, match=r"^x.csv:1: header must name .*missing \['volume'\]; unknown \['vol'\]"
    ):
        parse_csv("timestamp,symbol,exchange,open,high,low,close,vol\n", "x.csv")
    with pytest.raises(CsvFormatError, match=r"^x.csv:1: empty file"):
        parse_csv("\n# nothing\n", "x.csv")
    repeated = HEADER + "1700000000000,A,x,1,1,1,1,1\n1700000000000,A,x,1,1,1,1,1\n"
    with pytest.raises(
        CsvFormatError, match=r"^x.csv:3: timestamp 1700000000000 of x:A is not after 1700000000000"
    ):
        parse_csv(repeated, "x.csv")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CsvFormatError, match="cannot read"):
        load_csv(tmp_path / "nope.csv")
