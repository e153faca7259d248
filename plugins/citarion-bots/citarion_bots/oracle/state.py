"""What ORA knows about the platform: built from the events it hears, and the topology it is given.

ORA subscribes to everything (``>``); :meth:`PlatformState.take` folds each event into a few small
indexes, each entry keeping the id of the event it came from, so every figure an answer gives can cite
its source:

* per bot: the last ``Position`` of each series (positions, realized/unrealized PnL, fees), fills and
  fees, signals and orders, the last rejection;
* the last risk alerts (``risk.alert.*``) and every risk block, set and cleared;
* per order id: the events of that order (submitted, fills, rejection...), for its lineage;
* per event id: topic, source, cause and data time (the chain an order's lineage follows);
* per topic: who was seen publishing it, and how often;
* the topology (declared publish/subscribe patterns per bot), from the host's config when ORA is given
  it (:meth:`PlatformState.learn`).

Nothing here is invented: an index holds only what an event said.

Kept across restarts as an :class:`IndexState` (``PlatformState.state`` / ``PlatformState.restore``,
``docs/state.md``): a restarted ORA answers about the events it heard before the restart too.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import msgspec

from citarion_host.events import Event
from citarion_host.payloads import BotLifecycle, Order, Position, RiskAlert, Signal, Transfer
from citarion_host.topics import overlaps

__all__ = ["BlockRecord", "BotRecord", "Hop", "IndexState", "PlatformState"]


@dataclass(frozen=True, slots=True)
class Hop:
    """One event, as much of it as a lineage needs."""

    id: str
    topic: str
    source: str
    cause: str | None
    data_time: int | None


@dataclass(slots=True)
class BlockRecord:
    bot_id: str
    kind: str
    reason: str
    event_id: str
    data_time: int | None
    cleared_by: str | None = None


@dataclass(slots=True)
class BotRecord:
    """One bot instance as the events show it."""

    bot_id: str
    code: str | None = None
    positions: dict[str, tuple[Position, str]] = field(default_factory=dict)  # series -> (last, event id)
    fills: int = 0  # orders filled in full (the run summary's figure)
    partial: int = 0  # orders cancelled after a partial fill (a MARKET or IOC remainder)
    fees: float = 0.0
    signals: int = 0
    orders: int = 0
    rejections: int = 0
    last_rejection: tuple[Order, str] | None = None
    last_fill: str | None = None

    @property
    def realized(self) -> float:
        return sum(p.realized_pnl for p, _ in self.positions.values())

    @property
    def unrealized(self) -> float:
        return sum(p.unrealized_pnl for p, _ in self.positions.values())


class IndexState(msgspec.Struct, kw_only=True):
    """Everything :class:`PlatformState` folded from the events and the topology, as plain data."""

    bots: dict[str, BotRecord] = {}
    alerts: list[tuple[RiskAlert, str, int | None]] = []
    blocks: list[BlockRecord] = []
    orders: dict[str, list[str]] = {}
    hops: dict[str, Hop] = {}
    publishers: dict[str, dict[str, int]] = {}
    first_seen: dict[str, str] = {}
    codes: dict[str, str] = {}
    publish: dict[str, list[str]] = {}
    subscribe: dict[str, list[str]] = {}
    events: int = 0


@dataclass
class PlatformState:
    alert_memory: int = 50
    bots: dict[str, BotRecord] = field(default_factory=dict)
    alerts: deque[tuple[RiskAlert, str, int | None]] = field(default_factory=deque)
    blocks: list[BlockRecord] = field(default_factory=list)
    orders: dict[str, list[str]] = field(default_factory=dict)  # order id -> event ids, in order
    hops: dict[str, Hop] = field(default_factory=dict)
    publishers: dict[str, Counter[str]] = field(default_factory=dict)  # topic -> source code -> count
    first_seen: dict[str, str] = field(default_factory=dict)  # topic -> id of its first event
    # the topology: bot id -> code, and its declared publish / subscribe patterns
    codes: dict[str, str] = field(default_factory=dict)
    publish: dict[str, list[str]] = field(default_factory=dict)
    subscribe: dict[str, list[str]] = field(default_factory=dict)
    events: int = 0

    def learn(self, bots: list[Any]) -> None:
        """The topology: the host config's ``[[bots]]`` entries (id, code, publish, subscribe)."""
        enabled = [b for b in bots if getattr(b, "enabled", True)]
        self.codes = {b.id: b.code for b in enabled}
        self.publish = {b.id: list(b.publish) for b in enabled}
        self.subscribe = {b.id: list(b.subscribe) for b in enabled}
        for bot_id, code in self.codes.items():
            self.bot(bot_id).code = code

    def state(self) -> IndexState:
        return IndexState(
            bots=self.bots,
            alerts=list(self.alerts),
            blocks=self.blocks,
            orders=self.orders,
            hops=self.hops,
            publishers=self.publishers,  # type: ignore[arg-type]  # Counters: encoded as the dicts they are
            first_seen=self.first_seen,
            codes=self.codes,
            publish=self.publish,
            subscribe=self.subscribe,
            events=self.events,
        )

    def restore(self, state: IndexState) -> None:
        """Take ``state`` back (the alerts kept are the last ``alert_memory`` of them)."""
        self.bots, self.blocks, self.orders, self.hops = state.bots, state.blocks, state.orders, state.hops
        self.alerts = deque(state.alerts[-self.alert_memory :])
        self.publishers = {topic: Counter(sources) for topic, sources in state.publishers.items()}
        self.first_seen, self.codes = state.first_seen, state.codes
        self.publish, self.subscribe, self.events = state.publish, state.subscribe, state.events

    def bot(self, bot_id: str) -> BotRecord:
        found = self.bots.get(bot_id)
        if found is None:
            found = self.bots[bot_id] = BotRecord(bot_id)
        return found

    def take(self, event: Event) -> None:
        """Fold one event into the indexes."""
        self.events += 1
        data_time = event.metadata.get("dataTime") if event.metadata else None
        self.hops[event.id] = Hop(
            event.id,
            event.topic,
            event.source,
            event.causation_id,
            data_time if isinstance(data_time, int) else None,
        )
        seen = self.publishers.get(event.topic)
        if seen is None:
            seen = self.publishers[event.topic] = Counter()
            self.first_seen[event.topic] = event.id
        seen[event.source] += 1
        payload = event.payload
        if isinstance(payload, Order):
            self._order(event, payload)
        elif isinstance(payload, Position):
            self.bot(payload.bot_id).positions[f"{payload.exchange}:{payload.symbol}"] = (payload, event.id)
        elif isinstance(payload, Signal):
            bot_id = event.metadata.get("botId") if event.metadata else None
            if isinstance(bot_id, str):
                self.bot(bot_id).signals += 1
        elif isinstance(payload, RiskAlert):
            if event.topic.startswith("risk.alert.triggered"):
                self.alerts.append((payload, event.id, self.hops[event.id].data_time))
                while len(self.alerts) > self.alert_memory:
                    self.alerts.popleft()
        elif isinstance(payload, BotLifecycle):
            self.bot(payload.bot_id).code = payload.code
        elif isinstance(payload, Transfer):
            self.orders.setdefault(payload.transfer_id, []).append(event.id)
        elif isinstance(payload, dict) and event.topic.startswith("risk.block."):
            self._block(event, payload)

    def _order(self, event: Event, order: Order) -> None:
        self.orders.setdefault(order.order_id, []).append(event.id)
        if not order.bot_id:
            return
        record = self.bot(order.bot_id)
        action = event.action
        if action == "submitted":
            record.orders += 1
        elif action == "filled" or (action == "cancelled" and order.filled_quantity > 0):
            if action == "filled":
                record.fills += 1
            else:
                record.partial += 1
            record.fees += order.fee
            record.last_fill = event.id
        elif action == "rejected":
            record.rejections += 1
            record.last_rejection = (order, event.id)

    def _block(self, event: Event, payload: dict[str, Any]) -> None:
        bot_id = payload.get("botId")
        if not isinstance(bot_id, str):
            return
        if event.topic == "risk.block.set":
            self.blocks.append(
                BlockRecord(
                    bot_id,
                    str(payload.get("kind") or "block"),
                    str(payload.get("reason") or ""),
                    event.id,
                    self.hops[event.id].data_time,
                )
            )
        elif event.topic == "risk.block.cleared":
            for block in reversed(self.blocks):
                if block.bot_id == bot_id and block.cleared_by is None:
                    block.cleared_by = event.id
                    break

    # -- questions the answers ask -------------------------------------------------------------------

    def current_block(self, bot_id: str) -> BlockRecord | None:
        for block in reversed(self.blocks):
            if block.bot_id == bot_id:
                return None if block.cleared_by else block
        return None

    def last_block(self, bot_id: str) -> BlockRecord | None:
        return next((b for b in reversed(self.blocks) if b.bot_id == bot_id), None)

    def lineage(self, event_id: str) -> list[Hop]:
        """The event and its causes, back to the first one ORA heard."""
        chain: list[Hop] = []
        hop = self.hops.get(event_id)
        while hop is not None and len(chain) < 100:
            chain.append(hop)
            hop = self.hops.get(hop.cause) if hop.cause else None
        return chain

    def declared_for(self, topic: str, patterns: dict[str, list[str]]) -> list[tuple[str, str, str]]:
        """``(bot id, code, pattern)`` of each bot with a pattern in ``patterns`` (``self.publish`` or
        ``self.subscribe``) that overlaps ``topic`` (a topic or a pattern)."""
        out = []
        for bot_id, declared in patterns.items():
            pattern = next((p for p in declared if overlaps(p, topic)), None)
            if pattern is not None:
                out.append((bot_id, self.codes.get(bot_id, "?"), pattern))
        return out
