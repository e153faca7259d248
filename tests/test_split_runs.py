"""A deterministic run split across hosts gives the figures of one process (``split.py``, ``bus/nats/relay.py``).

configs/prod.toml (the paper-trading platform on JetStream) runs once as one host and once as three hosts
on another nats-server, each host running a third of the topology (``--only``), the feed's host ordering
the run. Every bot's summary row (handled events, orders, fills, PnL, the exchange's books to the cent,
alerts) must be equal. Without the relay the same split gave different figures for 10 of the 11 bots
(fills and PnL included): two strategies on two hosts raced to the stream, and the exchange filled
their orders in either order, at prices of bars the deciding bot had not seen.

The hosts run in one test process (one event loop, each with its own NATS connection, as separate
processes would); tests/test_deploy.py runs the same split as three processes on a 3-node cluster.
"""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path
from typing import Any

import pytest

from citarion_host.app import run_host
from citarion_host.bus import create_bus
from citarion_host.errors import ConfigError
from citarion_host.natsserver import NatsServer
from citarion_host.settings import LoadedConfig, load_config
from citarion_host.split import split_role
from citarion_host.topology import Placement

pytestmark = pytest.mark.nats

ROOT = Path(__file__).resolve().parents[1]
THIRDS = ("exchange,risk,wolf", "argus,mesh,scale,band,edge,vision", "logos,lumi")  # as docs/deploy.md


def prod(tmp_path: Path, url: str, bars: int = 500) -> LoadedConfig:
    """configs/prod.toml on the server at ``url``, its feed ``bars`` long (copied, so it can be shorter)."""
    for name in ("prod.toml", "paper-trading.toml"):
        text = (ROOT / "configs" / name).read_text()
        (tmp_path / name).write_text(re.sub(r"\bbars = 500\b", f"bars = {bars}", text))
    environ = {
        "CITARION_BACKEND__NATS__SERVERS": f'["{url}"]',
        "CITARION_HOST__PROGRESS_INTERVAL_S": "0",
        "CITARION_HOST__RECORD": "",
        "CITARION_HOST__SUMMARY": "false",
    }
    return load_config(tmp_path / "prod.toml", environ=environ)


async def one_host(tmp_path: Path, bars: int) -> dict[str, Any]:
    with NatsServer(store_dir=tmp_path / "one-store") as server:
        loaded = prod(tmp_path, server.url, bars)
        return await run_host(loaded, reload=False, handle_signals=False, out=io.StringIO())


async def three_hosts(
    tmp_path: Path, bars: int, delays: tuple[float, ...] = (0, 0, 0)
) -> list[dict[str, Any]]:
    """The three thirds, each started after its delay (the coordinator waits for the others)."""
    with NatsServer(store_dir=tmp_path / "split-store") as server:

        async def host(only: str, delay: float) -> dict[str, Any]:
            await asyncio.sleep(delay)
            loaded = prod(tmp_path, server.url, bars)
            return await run_host(
                loaded,
                reload=False,
                handle_signals=False,
                out=io.StringIO(),
                placement=Placement.of(only.split(",")),
            )

        return list(await asyncio.gather(*(host(only, d) for only, d in zip(THIRDS, delays, strict=True))))


def rows(*summaries: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every bot's summary row, from the host that ran it."""
    found: dict[str, dict[str, Any]] = {}
    for summary in summaries:
        for row in summary["bots"]:
            assert row["bot"] not in found, f"{row['bot']} reported by two hosts"
            found[row["bot"]] = row
    return found


def differences(one: dict[str, dict[str, Any]], split: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    return {
        bot: sorted(k for k in row if row[k] != split.get(bot, {}).get(k))
        for bot, row in one.items()
        if row != split.get(bot)
    }


@pytest.mark.slow
async def test_three_hosts_give_the_figures_of_one(tmp_path: Path) -> None:
    single = await one_host(tmp_path / "one", 500)
    split = await three_hosts(tmp_path / "split", 500)
    expected, got = rows(single), rows(*split)
    assert set(got) == set(expected) == {b.strip() for third in THIRDS for b in third.split(",")}
    assert expected["exchange"]["orders"] > 100 and expected["exchange"]["stats"]["balanced"] is True
    assert differences(expected, got) == {}, (
        "every bot's row equal: books, fills, PnL, alerts, events handled"
    )
    # the same events: each host counts what it saw, the feed's host (the coordinator) every bar
    assert expected["lumi"]["stats"] == got["lumi"]["stats"] and got["lumi"]["stats"]["completed"] is True


@pytest.mark.slow
async def test_hosts_started_in_any_order_give_the_same_figures(tmp_path: Path) -> None:
    """The coordinator first and the others late, or the other way round: it waits for them, and the
    followers hold their bots until it begins."""
    single = rows(await one_host(tmp_path / "one", 120))
    late_followers = rows(*await three_hosts(tmp_path / "late", 120, delays=(1.5, 0.5, 0)))
    late_coordinator = rows(*await three_hosts(tmp_path / "early", 120, delays=(0, 0, 1.5)))
    assert differences(single, late_followers) == {}
    assert differences(single, late_coordinator) == {}


def test_the_feeds_split_over_two_hosts_are_refused_and_roles_follow_the_feeds(tmp_path: Path) -> None:
    loaded = prod(tmp_path, "nats://127.0.0.1:1")
    bus = create_bus(loaded.config.backend)  # not started: only its capabilities are read
    assert split_role(loaded, Placement.of(["logos", "lumi"]), bus) == "coordinator"
    assert split_role(loaded, Placement.of(["exchange", "risk"]), bus) == "follower"
    assert split_role(loaded, Placement.of(), bus) is None, "the whole topology: nothing to relay"
    two_feeds = loaded.config.model_copy(
        update={"bots": [*loaded.config.bots, loaded.config.bot("lumi").model_copy(update={"id": "lumi-2"})]}
    )
    split_feeds = LoadedConfig(config=two_feeds, path=loaded.path, files=loaded.files)
    with pytest.raises(ConfigError, match=r"runs \['lumi'\] but not \['lumi-2'\]"):
        split_role(split_feeds, Placement.of(["lumi", "logos"]), bus)
    replicated = loaded.config.model_copy(
        update={
            "bots": [
                b.model_copy(update={"replicas": 2}) if b.id == "argus" else b for b in loaded.config.bots
            ]
        }
    )
    with pytest.raises(ConfigError, match=r"bots \['argus'\] have replicas"):
        split_role(
            LoadedConfig(config=replicated, path=loaded.path, files=loaded.files), Placement.of(["lumi"]), bus
        )
    free = loaded.config.model_copy(
        update={"backend": loaded.config.backend.model_copy(update={"deterministic": False})}
    )
    free_running = LoadedConfig(config=free, path=loaded.path, files=loaded.files)
    assert split_role(free_running, Placement.of(["lumi"]), create_bus(free.backend)) is None


SMALL = """
[host]
stop_on = "market.feed.completed"
progress_interval_s = 0

[backend]
type = "nats"

[backend.nats]
servers = ["{url}"]

[[bots]]
id = "numbers"
code = "LUM"
plugin = "tests.host_bots:Numbers"
publish = ["market.number.>", "market.feed.completed"]
params = {{ count = 20, topic = "market.number.emitted", announce_done = "market.feed.completed" }}

[[bots]]
id = "recorder"
code = "ORA"
plugin = "tests.host_bots:Recorder"
subscribe = ["market.number.>"]
params = {{ label = "{label}" }}
"""


async def test_a_split_run_refuses_a_reload_and_the_follower_finishes_when_the_coordinator_ends(
    tmp_path: Path,
) -> None:
    """Every host orders by the topology it started with: a reload that changes it is refused (the
    running run goes on); the follower's host finishes when the coordinator ends the run."""
    from citarion_host.host import Host
    from tests.host_bots import Recorder

    Recorder.seen.clear()
    with NatsServer(store_dir=tmp_path / "store") as server:
        path = tmp_path / "small.toml"
        path.write_text(SMALL.format(url=server.url, label=""))
        loaded = load_config(path)
        coordinator = Host(loaded, placement=Placement.of(["numbers"]))
        follower = Host(loaded, placement=Placement.of(["recorder"]))
        await follower.start()
        health = follower.health()
        assert not health.ready and any("waiting for the coordinator" in r for r in health.reasons)
        await coordinator.start()
        try:
            assert (
                type(coordinator.relay).__name__ == "Coordinator"
                and type(follower.relay).__name__ == "FollowerLink"
            )
            await asyncio.wait_for(coordinator.finished.wait(), 60)
            assert follower.health().ready, follower.health().reasons
            path.write_text(SMALL.format(url=server.url, label="changed"))
            for host in (coordinator, follower):
                with pytest.raises(ConfigError, match="keeps the topology it started with"):
                    await host.apply(load_config(path))
            assert not follower.finished.is_set(), "stop_on alone does not end a follower"
        finally:
            await coordinator.stop()
            await asyncio.wait_for(follower.finished.wait(), 60)
            await follower.stop()
    assert [e.payload["n"] for e in Recorder.seen["recorder"]] == list(range(20))
