"""A plugin module that contributes a payload type and a bot publishing it (tests/test_context.py)."""

from __future__ import annotations

from typing import Any, ClassVar

from citarion_host.bot import Bot
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Payload


class Note(Payload, frozen=True, gc=False):
    """The plugin's own payload (``analytics.note.*``)."""

    text: str


class Noter(Bot):
    """Publishes on ``analytics.note.made`` what each event it handles carries, and records the outcome."""

    type_name = "test-noter"
    outcomes: ClassVar[list[tuple[str, str]]] = []

    async def handle(self, event: Event) -> None:
        try:
            sent = await self.ctx.publish("analytics.note.made", event.payload["note"])
        except Exception as exc:
            Noter.outcomes.append((type(exc).__name__, str(exc)))
            return
        Noter.outcomes.append(("sent", type(sent.payload).__name__))


@hookimpl
def citarion_payload_types() -> dict[str, type[Payload]]:
    return {"analytics.note.*": Note}


@hookimpl
def citarion_bot_types() -> list[type[Bot[Any]]]:
    return [Noter]
