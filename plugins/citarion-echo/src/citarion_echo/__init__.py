"""citarion-echo: the smallest useful third-party plugin (see docs/plugins.md).

It uses the public API only (``from citarion_host import ...``): a plugin written like this keeps
working when the host's private modules change.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

from citarion_host import Bot, BotContext, Event, hookimpl


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    every: int = Field(default=10, ge=1)
    topic: str = "analytics.echo.counted"


class EchoBot(Bot[EchoParams]):
    """Counts received events per topic; every ``every`` events publishes the counts."""

    type_name = "echo"
    description = "counts events per topic and reports them (example third-party plugin)"

    def __init__(self, ctx: BotContext, params: EchoParams) -> None:
        super().__init__(ctx, params)
        self.counts: Counter[str] = Counter()
        self.total = 0

    async def handle(self, event: Event) -> None:
        if event.topic == self.params.topic:
            return  # our own reports
        self.counts[event.topic] += 1
        self.total += 1
        if self.total % self.params.every == 0:
            await self.ctx.publish(self.params.topic, {"total": self.total, "counts": dict(self.counts)})

    def stats(self) -> dict[str, int]:
        return {"received": self.total}


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [EchoBot]
