"""A host bot's failing handler on a durable JetStream subscription follows the documented policy
(docs/nats.md, "Failures"): nak with backoff, ``max_deliver`` deliveries, then a dead letter carrying
the bot's error, while the events around it are handled once each. (It used to be acked at once.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from citarion_host.natsserver import NatsServer
from tests.bus.conftest import eventually
from tests.host_bots import Picky, Recorder

from .state_helpers import FAST_RESTARTS, entry, start, ticks, write

pytestmark = pytest.mark.nats


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    Picky.calls.clear()
    Recorder.seen.clear()
    yield


async def test_a_durable_bots_failing_event_is_retried_max_deliver_times_then_dead_lettered(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    config = write(
        tmp_path / "host.toml",
        FAST_RESTARTS,
        f'[backend]\ntype = "nats"\n[backend.nats]\nservers = ["{nats_server.url}"]\nstream = "durfail"\n'
        'durable_start = "all"\nmax_deliver = 3\nnak_backoff_s = [0.05]\n[state]\nenabled = false\n',
        ticks(5),
        entry("picky", "tests.host_bots:Picky", subscribe='["analytics.number.>"]', extra="durable = true"),
        entry("letters", "tests.host_bots:Recorder", subscribe='["system.deadletter.>"]'),
    )
    host = await start(config)
    try:
        await eventually(lambda: Recorder.seen.get("letters"), timeout=30, what="a dead letter")
        await eventually(lambda: all(Picky.calls.get(n) for n in range(5)), timeout=30, what="every number")
    finally:
        await host.stop()
    assert Picky.calls[2] == 3, "delivered max_deliver times, no more"
    assert {n: Picky.calls[n] for n in (0, 1, 3, 4)} == {0: 1, 1: 1, 3: 1, 4: 1}
    [letter] = Recorder.seen["letters"]
    assert letter.topic == "system.deadletter.failed"
    assert "cannot take 2" in str(letter.payload)
