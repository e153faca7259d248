"""The benchmarks: every case runs on tiny counts and reports what it says it compares.

Structure and sanity only (rows, ratios, counts, orderings that hold by definition): never a timing,
the machine is shared and noisy. The figures themselves are for people (docs/performance.md).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from citarion_host import loops
from citarion_host.bench import (
    BenchError,
    Table,
    format_table,
    latency_figures,
    median_figures,
    paced,
    paired,
    ratio,
    rounds,
)
from citarion_host.bench_demo import (
    BUS_ALONE,
    DEMO_CONFIG,
    FLOOR,
    RAW_ROUND_TRIP,
    ROUND_TRIP,
    process_cpu_seconds,
    run_demo,
)
from citarion_host.bench_latency import EchoServer, run_latency
from citarion_host.bench_loop import run_loops
from citarion_host.bench_memory import run_memory
from citarion_host.bench_nats import run_core, run_jetstream
from citarion_host.bench_run import CASES
from citarion_host.cli import _BENCH_CASES, main
from citarion_host.errors import ConfigError
from citarion_host.natsserver import NatsServer

PAPER = DEMO_CONFIG.parent / "paper-trading.toml"


def names(table: Table) -> list[str]:
    return [row["name"] for row in table.rows]


def assert_sane(table: Table, *figures: str) -> None:
    """Every row has every figure, finite and positive; every ratio is positive."""
    assert table.rows and table.title and table.compares
    for row in table.rows:
        for figure in figures:
            assert row[figure] > 0, (table.title, row["name"], figure)
    for item in table.ratios:
        assert item.value > 0, (table.title, item.name)
        assert (item.target is None) == (item.met is None)


@pytest.fixture
def small_demo(tmp_path: Path) -> Path:
    """The demo topology on 60 bars instead of 500 (a copy of configs/paper-trading.toml)."""
    text = PAPER.read_text()
    assert "bars = 500" in text
    path = tmp_path / "small-demo.toml"
    path.write_text(text.replace("bars = 500", "bars = 60"))
    return path


# -- the harness ----------------------------------------------------------------------------------


def test_latency_figures_pair_sends_with_arrivals() -> None:
    figures = latency_figures([0, 1_000, 2_000, 3_000], [5_000, 7_000, 9_000, 100_000])
    assert figures["p50_us"] == 6.5 and figures["max_us"] == 97.0  # deltas 5, 6, 7, 97 us
    assert figures["p50_us"] <= figures["p99_us"] <= figures["max_us"]
    with pytest.raises(BenchError, match="3 events sent but 2 received"):
        latency_figures([1, 2, 3], [4, 5])


def test_medians_per_figure_and_the_spread_of_the_main_one() -> None:
    merged = median_figures(
        [
            {"events_per_s": 100.0, "p50_us": 3.0},
            {"events_per_s": 300.0, "p50_us": 1.0},
            {"events_per_s": 200.0, "p50_us": 2.0},
        ]
    )
    assert merged["events_per_s"] == 200.0 and merged["p50_us"] == 2.0
    assert merged["spread_pct"] == 100.0 and merged["rounds"] == [100.0, 300.0, 200.0]


def test_ratios_pair_the_variants_round_by_round() -> None:
    """A fast round for both then a slow one for both: each pair says 2x, though a's median round
    against b's median round would say 1x."""
    results = {"a": [{"events_per_s": 200.0}, {"events_per_s": 20.0}, {"events_per_s": 100.0}],
               "b": [{"events_per_s": 100.0}, {"events_per_s": 10.0}, {"events_per_s": 50.0}]}  # fmt: skip
    assert paired(results, "a", "b") == 2.0


async def test_rounds_interleave_and_rotate_the_order() -> None:
    calls: list[str] = []

    def variant(name: str) -> Any:
        async def run() -> dict[str, float]:
            calls.append(name)
            return {"events_per_s": 1.0}

        return run

    results = await rounds({"a": variant("a"), "b": variant("b"), "c": variant("c")}, 3)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(r) == 3 for r in results.values())


async def test_the_pacer_holds_its_rate_and_stamps_every_send() -> None:
    sent: list[int] = []
    count = 0

    async def send() -> None:
        nonlocal count
        count += 1

    start = time.perf_counter()
    figures = await paced(send, 2_000, 100, sent)
    elapsed = time.perf_counter() - start
    assert count == len(sent) == 100 and sent == sorted(sent)
    assert elapsed >= 99 / 2_000 * 0.9, "it did not run ahead of its schedule"
    assert figures["rate"] == 2_000 and figures["achieved_per_s"] > 0


def test_a_table_prints_rows_ratios_and_targets() -> None:
    table = Table("title", "what against what", ["events_per_s", "p50_us"])
    table.rows = [
        {"name": "bus", "events_per_s": 1234.5, "p50_us": 7.25},
        {"name": "raw", "events_per_s": 99.0},
    ]
    table.ratios = [ratio("bus / raw", 12.47, at_least=0.8), ratio("p50", 7.25, at_most=5), ratio("plain", 2)]
    lines = format_table(table).split("\n")
    assert lines[:2] == ["== title", "   what against what"]
    assert lines[4].split() == ["bus", "1,234", "7.2"] or lines[4].split() == ["bus", "1,234", "7.3"]
    assert lines[5].split() == ["raw", "99", "-"], "a missing figure prints as '-'"
    assert lines[6:] == [
        "   bus / raw: 12.47  (target >= 0.8: met)",
        "   p50: 7.25  (target <= 5: NOT met)",
        "   plain: 2",
    ]
    assert json.loads(json.dumps(table.to_dict()))["ratios"][0]["met"] is True


def test_the_echo_server_is_a_child_process_stopped_by_its_pid() -> None:
    with EchoServer() as echo:
        assert echo.port > 0 and echo.process.poll() is None
    assert echo.process.poll() is not None


def test_process_cpu_time_is_read_from_proc() -> None:
    import os

    cpu = process_cpu_seconds(os.getpid())
    assert cpu is None or cpu > 0
    assert process_cpu_seconds(2**22 + 12345) is None, "no such process: no figure, no error"


# -- event loops ------------------------------------------------------------------------------------


def test_the_event_loop_choice() -> None:
    assert loops.loop_factory("asyncio") is None
    assert loops.run(_loop_name(), "asyncio") == "asyncio"
    assert loops.run(_loop_name(), "uvloop") == "uvloop"  # a dependency on Linux
    assert loops.run(_loop_name(), "auto") == "uvloop"
    with pytest.raises(ConfigError, match="must be one of auto, asyncio, uvloop"):
        loops.loop_factory("trio")  # type: ignore[arg-type]


def test_uvloop_asked_for_but_missing_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what an interpreter without uvloop sees
    assert loops.loop_factory("auto") is None, "auto falls back to asyncio's loop"
    with pytest.raises(ConfigError, match=r"event_loop = 'uvloop', but uvloop cannot be imported"):
        loops.loop_factory("uvloop")


async def _loop_name() -> str:
    return loops.loop_name()


# -- the cases --------------------------------------------------------------------------------------


async def test_memory_case() -> None:
    one, fan, subscriptions = await run_memory(count=500, fanout_count=100, rounds_=1)
    (row,) = subscriptions.rows
    assert 200 < row["bytes"] < 50_000 and subscriptions.ratios[0].met is not None
    assert names(one) == [
        "direct call (baseline)",
        "bus.publish -> subscriber",
        "bot ctx.publish -> subscriber",
    ]
    assert names(fan) == ["direct calls (baseline)", "bus, repeated topic", "bus, fresh topic per event"]
    assert_sane(one, "events_per_s", "us_per_event")
    assert_sane(fan, "events_per_s", "deliveries_per_s")
    assert all(row["events"] == 500 for row in one.rows)
    assert all(row["deliveries_per_s"] == pytest.approx(10 * row["events_per_s"]) for row in fan.rows)
    assert [r.name for r in one.ratios if r.target] == ["bus events/s (thousands)"]


async def test_core_nats_case(shared_nats_server: NatsServer) -> None:
    (table,) = await run_core(shared_nats_server.url, count=300, rounds_=1)
    assert names(table) == ["bus (typed events)", "raw nats-py + codec", "raw nats-py, bytes"]
    assert_sane(table, "events_per_s", "us_per_event")
    assert [r.name for r in table.ratios] == ["bus / raw nats-py + codec", "bus / raw nats-py bytes"]


async def test_jetstream_case(shared_nats_server: NatsServer) -> None:
    per_event, batch = await run_jetstream(shared_nats_server.url, count=50, rounds_=1)
    assert names(per_event) == [
        "bot ctx.publish (host)",
        "raw js.publish (awaits each ack)",
        "raw js.publish_async",
    ]
    assert names(batch) == ["bus.publish_many", "raw publish_async + gather"]
    assert_sane(per_event, "events_per_s")
    assert_sane(batch, "events_per_s")
    assert per_event.ratios[0].target == ">= 0.8"
    assert all(row["events"] == 100 for row in batch.rows)
    streams = shared_nats_server.monitor("jsz?streams=true")
    assert not any(
        s["name"].startswith("bench-")
        for a in streams.get("account_details", [])
        for s in a.get("stream_detail", [])
    ), "every bench stream was dropped"


async def test_latency_case(shared_nats_server: NatsServer) -> None:
    (table,) = await run_latency(shared_nats_server.url, rates=(2_000,), seconds=0.05, rounds_=1)
    assert "2,000 events/s" in table.title
    assert names(table)[:2] == ["TCP echo round trip (floor)", "NATS protocol, no client library"]
    assert {
        "memory bus",
        "core NATS bus",
        "core raw nats-py + codec",
        "JetStream bot ctx.publish -> durable",
    } <= set(names(table))
    assert_sane(table, "achieved_per_s", "p50_us", "p99_us", "max_us")
    for row in table.rows:
        assert row["p50_us"] <= row["p99_us"] <= row["max_us"], row["name"]
        assert row["rate"] == 2_000
    assert [r.target for r in table.ratios] == ["<= 1", "<= 100", None, None]


@pytest.mark.slow
async def test_demo_case(shared_nats_server: NatsServer, small_demo: Path) -> None:
    (table,) = await run_demo(
        shared_nats_server.url,
        small_demo,
        rounds_=1,
        server_pid=shared_nats_server.pid,
        monitor=shared_nats_server.monitor,
    )
    assert names(table) == [
        "memory",
        "JetStream",
        "memory, free-running",
        "JetStream, free-running",
        FLOOR,
        BUS_ALONE,
        ROUND_TRIP,
        RAW_ROUND_TRIP,
    ]
    assert_sane(table, "events", "events_per_s", "cpu_us_per_event")
    assert table.row("memory")["events"] == table.row("JetStream")["events"], "deterministic: the same run"
    for row in (FLOOR, BUS_ALONE):
        assert table.row(row)["events"] == table.row("memory")["events"], "the run's events, replayed"
    assert table.row("JetStream")["server_cpu_us_per_event"] >= 0
    assert "server_cpu_us_per_event" not in table.row("memory")
    # Like with like: the floor and the bus alone move the NATS traffic of the JetStream run (one
    # publish, its ack, one delivery and its ack per event), give or take the run's own start, stop and
    # state traffic.
    demo_msgs = table.row("JetStream")["nats_msgs_per_event"]
    for row in (FLOOR, BUS_ALONE):
        msgs = table.row(row)["nats_msgs_per_event"]
        assert 3.9 <= msgs <= 4.1, (row, msgs)
        assert abs(demo_msgs - msgs) < 0.5, (row, demo_msgs, msgs)
    assert table.ratios[0].name == "JetStream / memory (events/s)"
    bound = next(r for r in table.ratios if r.name.startswith("JetStream / memory bound by the NATS path"))
    memory_cpu, bus_cpu = table.row("memory")["cpu_us_per_event"], table.row(BUS_ALONE)["cpu_us_per_event"]
    assert bound.value == pytest.approx(memory_cpu / (memory_cpu + bus_cpu), abs=1e-3)
    # The deterministic JetStream run waits for the store at each hop of a cascade; memory never waits.
    waits = table.row("JetStream")["sequencer_waits"]
    assert table.row("memory")["sequencer_waits"] == 0 and waits > 0
    assert "sequencer_waits" not in table.row("JetStream, free-running"), "no sequencer when free-running"
    memory_s = table.row("memory")["events"] / table.row("memory")["events_per_s"]
    bounds = [r for r in table.ratios if r.name.startswith("deterministic JetStream / memory bound by its")]
    # The waits at the bus alone's round trip, then at raw nats-py's (the client library's own).
    assert len(bounds) == 2
    for bound_by_waits, row in zip(bounds, (ROUND_TRIP, RAW_ROUND_TRIP), strict=True):
        trip = table.row(row)
        assert trip["events"] == 500, row
        assert 0 < trip["round_trip_p10_us"] <= trip["round_trip_us"], row
        assert bound_by_waits.value == pytest.approx(
            memory_s / (memory_s + waits * trip["round_trip_p10_us"] / 1e6), abs=1e-3
        ), row


async def test_state_case(shared_nats_server: NatsServer, small_demo: Path) -> None:
    from citarion_host.bench_state import run_state_bench

    parts, memory, jetstream, demo = await run_state_bench(shared_nats_server.url, 2500, 2100, 1, small_demo)
    assert parts.row("BenchStrategy")["snapshot_us"] > 0 and parts.row("BenchStrategy")["kv_put_us"] > 0
    assert parts.row("BenchStrategy")["bytes"] > 1000
    assert names(memory) == ["memory, state on", "memory, state off"]
    assert names(jetstream) == ["JetStream, state on", "JetStream, state off"]
    assert names(demo) == ["demo, state on", "demo, state off"]
    for table in (memory, jetstream):
        for row in table.rows:
            assert row["events_per_s"] > 0 and row["us_per_event"] > 0
        assert table.rows[0]["snapshots"] >= 2 and table.rows[1]["snapshots"] == 0, (
            "on snapshots, off does not"
        )
        assert [r.name for r in table.ratios] == [
            "state on / off (events/s)",
            "state cost per event (us)",
            "per snapshot (us, incl. the store write)",
        ]
    assert demo.rows[0]["events"] == demo.rows[1]["events"] > 0, "the same demo either way"


async def test_the_demo_case_names_a_missing_config(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no such config"):
        await run_demo("nats://127.0.0.1:1", tmp_path / "nope.toml", rounds_=1)


@pytest.mark.slow
def test_event_loop_case(shared_nats_server: NatsServer, small_demo: Path) -> None:
    (table,) = run_loops(shared_nats_server.url, count=200, latency_seconds=0.05, rounds_=1, path=small_demo)
    assert names(table) == ["asyncio", "uvloop"]
    assert_sane(
        table,
        "core_events_per_s",
        "core_bus_p50_us",
        "demo_memory_events_per_s",
        "demo_jetstream_events_per_s",
    )
    assert all(r.name.startswith("uvloop / asyncio: ") for r in table.ratios)


# -- the command ----------------------------------------------------------------------------------


def test_the_command_knows_every_case() -> None:
    assert tuple(CASES) == _BENCH_CASES


def test_bench_prints_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["bench", "--case", "memory", "--rounds", "1", "--events", "300", "--fanout-events", "50"]) == 0
    )
    out = capsys.readouterr().out
    assert out.split("\n")[0].split(" CPUs, load average ")[0].isdigit(), "first the machine"
    assert "== memory: one-to-one, typed events built on both sides" in out
    assert "bus, fresh topic per event" in out and "target >= 400" in out


def test_bench_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "bench",
        "--case",
        "memory",
        "--rounds",
        "2",
        "--events",
        "300",
        "--fanout-events",
        "50",
        "--json",
    ]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["machine"]["cpus"] >= 1 and result["machine"]["event_loop"] == "uvloop", "auto, as the host"
    assert "load_average_after" in result["machine"]
    one, fan, _ = result["cases"]["memory"]
    assert one["rows"][1]["name"] == "bus.publish -> subscriber"
    assert len(one["rows"][1]["rounds"]) == 2 and one["rows"][1]["spread_pct"] >= 0
    assert fan["ratios"][1]["name"] == "fresh topics / repeated topic"


def test_bench_refuses_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--rounds", "0"])
    assert "must be at least 1, got 0" in capsys.readouterr().err


def test_bench_reports_a_failing_case_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["bench", "--case", "demo", "--rounds", "1", "--config", str(tmp_path / "missing.toml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: bench: ") and "missing.toml: no such config" in err


async def test_paired_rounds_runs_each_variant_next_to_its_own_baseline_alternating_which_goes_first() -> (
    None
):
    from citarion_host.bench import paired_rounds, paired_with

    order: list[str] = []

    def run(name: str, value: float) -> Any:
        async def one() -> dict[str, Any]:
            order.append(name)
            return {"events_per_s": value}

        return one

    base, pairs = await paired_rounds(run("off", 10.0), {"a": run("a", 5.0), "b": run("b", 20.0)}, 2)
    assert order == ["a", "off", "off", "b", "b", "off", "off", "a"]  # rotated, sides alternating
    assert len(base) == 4 and [len(p) for p in pairs.values()] == [2, 2]
    assert paired_with(pairs["a"]) == 0.5 and paired_with(pairs["b"]) == 2.0
