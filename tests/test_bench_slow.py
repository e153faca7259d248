"""``bench --case slow-subscriber``: its table's shape and invariants at a small size (figures only
printed: nothing here asserts a timing or a memory size)."""

from __future__ import annotations

import pytest

from citarion_host.bench import format_table
from citarion_host.bench_slow import main, slow_subscriber_tables
from citarion_host.cli import main as cli


def test_the_case_runs_each_variant_in_its_own_process_and_accounts_for_every_event() -> None:
    (table,) = slow_subscriber_tables(3_000)
    print(format_table(table))
    assert [row["name"] for row in table.rows] == [
        "bounded (max_urgent = max_pending)",
        "unbounded (the old behaviour)",
    ]
    assert all(row["delivered"] + row["dropped"] == 3_000 and row["peak_rss_mb"] > 0 for row in table.rows)
    lost, untold, _ = table.ratios
    assert lost.value == 0 and lost.met and untold.value == 0 and untold.met
    assert table.notes[0] == "critical: published 150, delivered 150, dropped 0"


def test_the_module_refuses_a_bad_size(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--events", "0"])
    assert "--events must be >= 1, got 0" in capsys.readouterr().err


def test_the_command_refuses_a_bad_size(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli(["bench", "--case", "slow-subscriber", "--slow-events", "-5"])
    assert "--slow-events" in capsys.readouterr().err
