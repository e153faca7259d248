"""``citarion-host replay``: stored events printed or exported, run in-process against a test server."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
from nats.js.errors import NotFoundError

from citarion_host.bus import NatsSettings
from citarion_host.bus.nats import NatsBus
from citarion_host.cli import main
from citarion_host.events import Event, encode_event, make_event
from citarion_host.natsserver import NatsServer
from citarion_host.replay import parse_time

SIGNAL = {"symbol": "BTCUSDT", "exchange": "binance", "direction": "LONG", "confidence": 0.5}
_names = itertools.count(1)


@pytest.fixture
def stored(shared_nats_server: NatsServer) -> Iterator[tuple[NatsSettings, list[Event]]]:
    """A stream of this test's own holding three signals and one quote; deleted afterwards."""
    settings = NatsSettings(servers=[shared_nats_server.url], stream=f"replay-cli-{next(_names)}")
    events = [
        make_event("trading.signal.generated", {**SIGNAL, "entryPrice": 100.0 + n}, source="GRD")
        for n in range(3)
    ]
    events.insert(1, make_event("market.quote.updated", {"bid": 1.5}, source="LUM"))

    async def publish() -> None:
        async with NatsBus(settings) as bus:
            await bus.publish_many(events)

    asyncio.run(publish())
    yield settings, events
    asyncio.run(_delete_stream(settings))


async def _delete_stream(settings: NatsSettings) -> None:
    nc = await nats.connect(settings.servers)
    try:
        await nc.jsm().delete_stream(settings.stream)
    except NotFoundError:
        pass
    finally:
        await nc.close()


def replay_cli(settings: NatsSettings, *args: str) -> int:
    return main(["replay", "--servers", *settings.servers, "--stream", settings.stream, *args])


def test_json_export_is_the_wire_json_of_each_matching_event(
    stored: tuple[NatsSettings, list[Event]], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, events = stored
    assert replay_cli(settings, "--topic", "trading.>", "--since", "15m", "--json") == 0
    lines = capsys.readouterr().out.splitlines()
    signals = [event for event in events if event.topic.startswith("trading.")]
    assert lines == [encode_event(event).decode() for event in signals]
    assert json.loads(lines[0])["payload"]["entryPrice"] == 100.0


def test_text_output_shows_time_topic_source_and_payload(
    stored: tuple[NatsSettings, list[Event]], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, events = stored
    assert replay_cli(settings) == 0  # default topic ">": everything, oldest first
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split()[1] for line in lines] == [event.topic for event in events]
    assert lines[1].split()[2:4] == ["LUM", "normal"] and lines[1].endswith('{"bid":1.5}')
    assert "4 event(s)" in captured.err


def test_the_time_window_is_honoured(
    stored: tuple[NatsSettings, list[Event]], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, _ = stored
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert replay_cli(settings, "--since", future, "--json") == 0
    assert capsys.readouterr().out == ""
    assert replay_cli(settings, "--since", "1d", "--until", "2h", "--json") == 0
    assert capsys.readouterr().out == ""
    assert replay_cli(settings, "--since", "1h", "--until", future, "--json") == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_bad_input_and_missing_stream_are_clear_errors(
    stored: tuple[NatsSettings, list[Event]], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, _ = stored
    assert replay_cli(settings, "--since", "yesterday") == 2
    assert "not a time: 'yesterday'" in capsys.readouterr().err
    missing = settings.model_copy(update={"stream": "no-such-stream"})
    assert replay_cli(missing) == 1
    assert "no JetStream stream 'no-such-stream'" in capsys.readouterr().err


def test_parse_time_reads_durations_and_iso_times() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_time("15m", now) == now - timedelta(minutes=15)
    assert parse_time("2h", now) == now - timedelta(hours=2)
    assert parse_time("1.5d", now) == now - timedelta(days=1.5)
    assert parse_time("2024-05-01T10:00:00Z") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_time("2024-05-01T10:00:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("soon")


def test_config_gives_servers_and_stream_as_in_the_issue(
    stored: tuple[NatsSettings, list[Event]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``citarion-host replay --config F --topic 'trading.>' --since 15m --json``."""
    settings, events = stored
    config = tmp_path / "prod.toml"
    config.write_text(
        f'[backend]\ntype = "nats"\n[backend.nats]\nservers = {json.dumps(settings.servers)}\n'
        f'stream = "{settings.stream}"\n'
    )
    assert main(["replay", "--config", str(config), "--topic", "trading.>", "--since", "15m", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [encode_event(e).decode() for e in events if e.topic.startswith("trading.")]
    assert main(["replay", "--config", str(tmp_path / "missing.toml")]) == 1
    assert "missing.toml: no such config file" in capsys.readouterr().err
