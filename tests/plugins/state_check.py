"""Known answers for the first-party bots' state: a bot run over N events must equal the same bot run
over k events, restarted from its snapshot, then over the N - k others (docs/state.md).

The events are real: the demo topologies (``configs/paper-trading.toml``, ``configs/platform.toml``)
run once on the in-process bus with a recorder, and each bot's *inbox* is the recorded events its
``subscribe`` patterns match, in publish order (the order the host delivers them in, on memory). Each
bot is then fed its inbox through the harness twice: straight through, and with restarts
(``BotHarness.restarted``: the real snapshot encoding) at a few points. What it publishes, its
``stats()`` and its final state must be the same.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from citarion_host.bot import Bot
from citarion_host.events import Event
from citarion_host.host import Host
from citarion_host.settings import BotConfig, load_config
from citarion_host.state import encode_snapshot, state_spec
from citarion_host.testing import BotHarness
from citarion_host.topics import matches

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "configs" / "paper-trading.toml"
PLATFORM = REPO / "configs" / "platform.toml"

#: What one published event is, without its id and wall-clock time.
Output = tuple[Any, ...]


@dataclass
class RecordedRun:
    """One topology's run: its bots (config and type) and every event, in publish order."""

    bots: dict[str, tuple[BotConfig, type[Bot]]]
    events: list[Event]

    def inbox(self, bot_id: str) -> list[Event]:
        patterns = self.bots[bot_id][0].subscribe
        return [e for e in self.events if any(matches(p, e.topic) for p in patterns)]


async def record_run(path: Path) -> RecordedRun:
    """Run ``path`` on the memory bus in-process until ``stop_on``; every event, in publish order."""
    loaded = load_config(path)
    host = Host(loaded)
    events: list[Event] = []
    await host.bus.start()
    await host.bus.subscribe(">", events.append, name="test:recorder", max_pending=1 << 21)
    async with host:
        await asyncio.wait_for(host.finished.wait(), timeout=180)
        await host.bus.settle()
        bots = {bot_id: (runner.config, runner.bot_type) for bot_id, runner in host.runners.items()}
    return RecordedRun(bots, events)


def output(event: Event) -> Output:
    return (
        event.topic,
        event.source,
        event.priority,
        event.causation_id,
        event.correlation_id,
        msgspec.json.encode(event.payload),
        json.dumps(event.metadata, sort_keys=True, default=str),
    )


def state_bytes(harness: BotHarness) -> bytes:
    """The bot's state now, as the host would store it."""
    bot = harness.bot
    snapshot, _ = encode_snapshot(
        "b", state_spec(type(bot)), bot.snapshot(), handled=0, seq=None, stream=None, event_id=None
    )
    return bytes(snapshot.state)


def harness_for(config: BotConfig, bot_type: type[Bot], params: dict[str, Any] | None = None) -> BotHarness:
    return BotHarness(
        bot_type,
        config.params if params is None else params,
        bot_id=config.id,
        code=config.code,
        publish=config.publish,
    )


@dataclass
class Through:
    """What a bot did over its inbox: its outputs, its figures, its final state, its restarts."""

    outputs: list[Output]
    stats: str
    state: bytes
    restarts: int


async def run_through(
    config: BotConfig, bot_type: type[Bot], inbox: Sequence[Event], cuts: Iterable[int] = ()
) -> Through:
    """Feed ``inbox`` to a new bot, restarting it from its snapshot before each index in ``cuts``.

    At each restart the restored bot's state must encode exactly like its predecessor's (nothing
    declared is lost on the way)."""
    harness = harness_for(config, bot_type)
    await harness.start()
    outputs: list[Output] = []
    restarts = 0
    cut_at = set(cuts)
    for index, event in enumerate(inbox):
        if index in cut_at:
            before = state_bytes(harness)
            outputs += [output(e) for e in harness.published]
            restarted = await harness.restarted()
            await harness.stop()
            harness, restarts = restarted, restarts + 1
            assert state_bytes(harness) == before, f"{config.id}: the restored state differs at {index}"
        await harness.feed_event(event)
    outputs += [output(e) for e in harness.published]
    stats = json.dumps(harness.bot.stats(), sort_keys=True, default=str)
    final = state_bytes(harness)
    await harness.stop()
    return Through(outputs, stats, final, restarts)


def cuts_for(count: int) -> list[int]:
    """Restart points: early (windows still warming up), a third and two thirds in."""
    return sorted({min(7, count - 1), count // 3, 2 * count // 3} - {0}) if count > 1 else []


def cuts_for_dense(count: int) -> list[int]:
    """More restart points: early, then every eighth of the way."""
    return sorted({min(7, count - 1), *(count * k // 8 for k in range(1, 8))} - {0}) if count > 1 else []


async def assert_continues_exactly(run: RecordedRun, bot_id: str) -> Through:
    """The known answer: straight through == restarted at :func:`cuts_for` points."""
    config, bot_type = run.bots[bot_id]
    inbox = run.inbox(bot_id)
    assert inbox, f"{bot_id} received nothing in the recorded run"
    straight = await run_through(config, bot_type, inbox)
    cuts = cuts_for_dense(len(inbox))
    restarted = await run_through(config, bot_type, inbox, cuts)
    assert restarted.restarts == len(cuts)
    assert len(restarted.outputs) == len(straight.outputs), bot_id
    for index, (got, want) in enumerate(zip(restarted.outputs, straight.outputs, strict=True)):
        assert got == want, f"{bot_id}: output {index} differs after a restart"
    assert restarted.stats == straight.stats, bot_id
    assert restarted.state == straight.state, bot_id
    return straight


# -- feeds: they publish on their own, from a task ----------------------------------------------------


def yielding(harness: BotHarness) -> BotHarness:
    """Make every publish give the loop a turn (as a bus may), so a feed can be stopped between any two
    of its events, not only between bars."""
    publish = harness.ctx.publish

    async def publish_and_yield(*args: Any, **kwargs: Any) -> Event:
        event = await publish(*args, **kwargs)
        await asyncio.sleep(0)
        return event

    harness.ctx.publish = publish_and_yield  # type: ignore[method-assign]
    return harness


async def feed_through(
    bot_type: type[Bot], params: dict[str, Any], cuts: Iterable[int] = (), *, bot_id: str = "lumi"
) -> Through:
    """Run a feed to its end, stopping it after each count of published events in ``cuts`` and
    starting a new one restored from its snapshot (``BotHarness.restarted``)."""
    harness = yielding(BotHarness(bot_type, params, bot_id=bot_id, code="LUM"))
    await harness.start()
    outputs: list[Output] = []
    restarts = 0
    for cut in sorted(cuts):
        while len(outputs) + len(harness.published) < cut:
            await asyncio.sleep(0)
        await harness.stop()
        outputs += [output(e) for e in harness.published]
        harness = yielding(await harness.restarted())
        restarts += 1
    await harness.bot.wait()  # type: ignore[attr-defined]
    outputs += [output(e) for e in harness.published]
    stats = json.dumps(harness.bot.stats(), sort_keys=True, default=str)
    return Through(outputs, stats, state_bytes(harness), restarts)
