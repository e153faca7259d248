"""The bot context: the host and the test harness refuse, stamp and validate alike (one implementation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from citarion_host.bot import Bot
from citarion_host.events import Event
from citarion_host.host import Host
from citarion_host.plugins import Plugins
from citarion_host.settings import load_config
from citarion_host.testing import BotHarness
from tests import note_plugin
from tests.bus.conftest import eventually
from tests.note_plugin import Noter

PUBLISH = ["analytics.attempt.>", "analytics.query.answered"]

#: (what the bot tries, on which topic, with which payload). Lineage and refusals are what is compared.
TRIES: list[dict[str, Any]] = [
    {"kind": "publish", "topic": "trading.order.submitted", "payload": {"x": 1}},  # undeclared
    {"kind": "reply", "topic": "trading.order.submitted", "payload": {"x": 1}},  # a foreign topic
    {"kind": "request", "topic": "trading.order.submitted", "payload": {"x": 1}},
    {"kind": "publish", "topic": "analytics.attempt.made", "payload": {"x": 1}},
    {"kind": "reply", "topic": "analytics.attempt.made", "payload": {"x": 2}},
    {"kind": "publish", "topic": "analytics.query.answered", "payload": {"bogus": 1}},  # not an Answer
]


class Attempts(Bot):
    """Does what each event it handles says (``TRIES``) and records the outcome, refusals included."""

    type_name = "test-attempts"
    outcomes: ClassVar[list[tuple[Any, ...]]] = []

    async def handle(self, event: Event) -> None:
        kind, topic, payload = event.payload["kind"], event.payload["topic"], event.payload["payload"]
        try:
            if kind == "publish":
                sent = await self.ctx.publish(topic, payload)
            elif kind == "reply":
                sent = await self.ctx.reply(event, topic, payload)
            else:
                sent = await self.ctx.request(topic, payload, timeout=0.01)
        except Exception as exc:
            Attempts.outcomes.append((kind, type(exc).__name__, str(exc)))
            return
        Attempts.outcomes.append(
            (kind, "sent", sent.topic, sent.source, sent.causation_id == event.id, sent.correlation_id)
        )


def _normalised(outcomes: list[tuple[Any, ...]], requests: list[str]) -> list[tuple[Any, ...]]:
    """A reply's correlation id is its request's id, which differs between the two runs."""
    return [(*o[:5], "request id" if o[5] in requests else o[5]) if o[1] == "sent" else o for o in outcomes]


async def _under_the_harness() -> list[tuple[Any, ...]]:
    Attempts.outcomes = []
    harness = BotHarness(Attempts, bot_id="attempts", code="ORA", publish=PUBLISH)
    await harness.start()
    fed = [await harness.feed("analytics.try.it", t) for t in TRIES]
    await harness.stop()
    return _normalised(Attempts.outcomes, [e.id for e in fed])


async def _under_the_host(tmp_path: Path) -> tuple[list[tuple[Any, ...]], int]:
    Attempts.outcomes = []
    path = tmp_path / "host.toml"
    path.write_text(
        "[[bots]]\n"
        'id = "attempts"\ncode = "ORA"\nplugin = "tests.test_context:Attempts"\n'
        f"publish = {PUBLISH!r}\n".replace("'", '"')
        + 'subscribe = ["analytics.try.>"]\n'
    )
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    try:
        fed = [host.bus.catalog.make("analytics.try.it", t, source="TST") for t in TRIES]
        for event in fed:
            await host.bus.publish(event)
        await eventually(lambda: len(Attempts.outcomes) == len(TRIES), what="every attempt made")
        refused = host.runners["attempts"].refused
    finally:
        await host.stop()
    return _normalised(Attempts.outcomes, [e.id for e in fed]), refused


async def test_the_harness_refuses_stamps_and_validates_exactly_as_the_host(tmp_path: Path) -> None:
    hosted, refused = await _under_the_host(tmp_path)
    tested = await _under_the_harness()
    for row in hosted:
        print(row)
    assert tested == hosted
    assert refused == 3, "publish, reply and request outside the declared patterns"
    assert hosted[0] == (
        "publish",
        "PublishNotAllowedError",
        "bot 'attempts' may not publish 'trading.order.submitted': declared publish patterns are "
        f"{PUBLISH} (nothing was sent)",
    )
    assert [o[1] for o in hosted[:3]] == ["PublishNotAllowedError"] * 3
    assert hosted[3] == ("publish", "sent", "analytics.attempt.made", "ORA", True, None)
    assert hosted[4] == ("reply", "sent", "analytics.attempt.made", "ORA", True, "request id")
    assert hosted[5][1] == "InvalidEventError"


async def test_the_harness_records_refusals_and_sends_nothing() -> None:
    harness = BotHarness(Attempts, bot_id="attempts", code="ORA", publish=PUBLISH)
    await harness.feed("analytics.try.it", TRIES[0])
    await harness.feed("analytics.try.it", TRIES[1])
    assert harness.ctx.refused == ["trading.order.submitted"] * 2
    assert harness.published == []


async def test_a_plugins_own_payload_types_are_validated_in_the_harness_as_by_the_host(
    tmp_path: Path,
) -> None:
    """The host's catalog holds its plugins' payload types; the harness's holds those of the bot's
    module, so a payload the host refuses (or converts) is refused (or converted) in the test too."""
    notes = [{"text": "hello"}, {"text": 5}]
    Noter.outcomes = []
    path = tmp_path / "host.toml"
    path.write_text(
        '[[bots]]\nid = "noter"\ncode = "ORA"\nplugin = "test-noter"\n'
        'publish = ["analytics.note.>"]\nsubscribe = ["analytics.try.>"]\n'
    )
    plugins = Plugins()
    plugins.register(note_plugin, name="note-plugin")
    host = Host(load_config(path), plugins=plugins)
    await host.start()
    try:
        for note in notes:
            await host.bus.publish(host.bus.catalog.make("analytics.try.it", {"note": note}, source="TST"))
        await eventually(lambda: len(Noter.outcomes) == len(notes), what="both notes tried")
    finally:
        await host.stop()
    hosted, Noter.outcomes = Noter.outcomes, []
    harness = BotHarness(Noter, bot_id="noter", code="ORA", publish=["analytics.note.>"])
    for note in notes:
        await harness.feed("analytics.try.it", {"note": note})
    print(hosted)
    assert Noter.outcomes == hosted
    assert hosted[0] == ("sent", "Note")
    assert hosted[1][0] == "InvalidEventError" and "text" in hosted[1][1]
