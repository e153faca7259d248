"""ORA's fixed queries over :class:`~.state.PlatformState`: one function per intent, one template each.

Every figure comes from an event, and the answer cites that event's id (``[<id>]``, and in
``Answer.eventIds``); what ORA has not seen it says it has not seen. Amounts are printed with two
decimals, quantities as the exchange reported them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from citarion_host.topics import overlaps

from .router import Route
from .state import BotRecord, PlatformState

__all__ = ["ANSWERS", "Reply"]

Reply = tuple[str, list[str]]  # (text, cited event ids)


def _when(data_time: int | None) -> str:
    if data_time is None:
        return "an unknown data time"
    return datetime.fromtimestamp(data_time / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _money(value: float) -> str:
    return f"{value:+,.2f}"


def _named(route: Route, state: PlatformState) -> list[BotRecord]:
    return [state.bot(bot_id) for bot_id in route.slots.bots]


def positions(route: Route, state: PlatformState, limit: int) -> Reply:
    bots = _named(route, state) or [b for b in state.bots.values() if b.positions]
    if not bots:
        return "ORA has seen no position report yet.", []
    lines, cited = [], []
    for bot in bots:
        held = [(series, p, eid) for series, (p, eid) in sorted(bot.positions.items()) if p.quantity]
        if route.slots.symbol:
            held = [h for h in held if h[0].endswith(f":{route.slots.symbol}")]
        if not held:
            lines.append(
                f"{bot.bot_id} has no open position" + (" (no report seen)." if not bot.positions else ".")
            )
            continue
        parts = [
            f"{series} {p.quantity!r} at mark {p.mark_price:,.2f}"
            f" (unrealized {_money(p.unrealized_pnl)}) [{eid}]"
            for series, p, eid in held[:limit]
        ]
        more = f" and {len(held) - limit} more" if len(held) > limit else ""
        lines.append(f"{bot.bot_id} holds {len(held)}: " + "; ".join(parts) + more + ".")
        cited += [eid for _, _, eid in held[:limit]]
    return " ".join(lines), cited


def pnl(route: Route, state: PlatformState, limit: int) -> Reply:
    named = _named(route, state)
    if named:
        lines, cited = [], []
        for bot in named:
            if not bot.positions:
                lines.append(f"ORA has seen no position report of {bot.bot_id}: no PnL to tell.")
                continue
            ids = [eid for _, (_, eid) in sorted(bot.positions.items())]
            fees = sum(p.fees_paid for p, _ in bot.positions.values())
            lines.append(
                f"{bot.bot_id}: PnL {_money(bot.realized + bot.unrealized)} (realized {_money(bot.realized)},"
                f" unrealized {_money(bot.unrealized)}), fees {fees:,.2f}, over {len(ids)} series;"
                f" last reports [{', '.join(ids[:limit])}]"
                + (f" and {len(ids) - limit} more" if len(ids) > limit else "")
                + "."
            )
            cited += ids[:limit]
        return " ".join(lines), cited
    ranked = sorted(
        (b for b in state.bots.values() if b.positions),
        key=lambda b: (-(b.realized + b.unrealized), b.bot_id),
    )
    if not ranked:
        return "ORA has seen no position report yet: no PnL to tell.", []
    parts, cited = [], []
    for bot in ranked[:limit]:
        latest = max(bot.positions.values(), key=lambda item: item[1])[1]
        parts.append(f"{bot.bot_id} {_money(bot.realized + bot.unrealized)} [{latest}]")
        cited.append(latest)
    more = f" and {len(ranked) - limit} more" if len(ranked) > limit else ""
    return f"PnL by bot, best first: {'; '.join(parts)}{more}.", cited


def alerts(route: Route, state: PlatformState, limit: int) -> Reply:
    wanted = set(route.slots.bots)
    found = [a for a in reversed(state.alerts) if not wanted or a[0].bot_id in wanted]
    if route.slots.symbol:
        found = [a for a in found if a[0].symbol == route.slots.symbol]
    if not found:
        about = f" about {', '.join(sorted(wanted))}" if wanted else ""
        return f"No risk alert{about} so far.", []
    parts = [
        f"{alert.severity} {alert.kind} at {_when(time)}: {alert.message} [{eid}]"
        for alert, eid, time in found[:limit]
    ]
    return f"Last {min(limit, len(found))} of {len(found)} risk alerts, newest first: " + "; ".join(
        parts
    ) + ".", [eid for _, eid, _ in found[:limit]]


def why_blocked(route: Route, state: PlatformState, limit: int) -> Reply:
    lines, cited = [], []
    for bot_id in route.slots.bots:
        block = state.current_block(bot_id)
        if block is not None:
            lines.append(
                f"{bot_id} is blocked by the risk guard ({block.kind}) since {_when(block.data_time)}:"
                f" {block.reason} [{block.event_id}]."
            )
            cited.append(block.event_id)
            continue
        last = state.last_block(bot_id)
        if last is None:
            lines.append(f"{bot_id} is not blocked and has not been blocked.")
        else:
            assert last.cleared_by is not None
            lines.append(
                f"{bot_id} is not blocked; its last block ({last.kind}: {last.reason}) was set"
                f" [{last.event_id}] and cleared [{last.cleared_by}]."
            )
            cited += [last.event_id, last.cleared_by]
    return " ".join(lines), cited


def blocked_bots(route: Route, state: PlatformState, limit: int) -> Reply:
    now = [b for b in (state.current_block(bot_id) for bot_id in sorted(state.bots)) if b is not None]
    if not now:
        return "No bot is blocked.", []
    parts = [f"{b.bot_id} ({b.kind}: {b.reason}) [{b.event_id}]" for b in now[:limit]]
    return f"{len(now)} blocked: " + "; ".join(parts) + ".", [b.event_id for b in now[:limit]]


def _topic(route: Route) -> str:
    assert route.slots.topic is not None
    return route.slots.topic


def publishers(route: Route, state: PlatformState, limit: int) -> Reply:
    topic = _topic(route)
    declared = state.declared_for(topic, state.publish)
    seen: dict[str, int] = {}
    first: list[str] = []
    for name, sources in sorted(state.publishers.items()):
        if overlaps(topic, name):
            for source, count in sources.items():
                seen[source] = seen.get(source, 0) + count
            first.append(state.first_seen[name])
    said = (
        f"declared by {', '.join(f'{b} ({c}, {p!r})' for b, c, p in declared)}"
        if declared
        else "declared by no bot"
        if state.codes
        else "declarations unknown (ORA was not given the topology)"
    )
    heard = (
        "seen from "
        + ", ".join(f"{s} ({n} events)" for s, n in sorted(seen.items(), key=lambda i: (-i[1], i[0])))
        + f", first [{first[0]}]"
        if seen
        else "not seen on the bus yet"
    )
    return f"{topic}: {said}; {heard}.", first[:1]


def subscribers(route: Route, state: PlatformState, limit: int) -> Reply:
    topic = _topic(route)
    if not state.codes:
        return f"{topic}: ORA was not given the topology, so it cannot tell who subscribes.", []
    declared = state.declared_for(topic, state.subscribe)
    if not declared:
        return f"{topic}: no bot subscribes to it.", []
    return f"{topic}: subscribed by {', '.join(f'{b} ({c}, {p!r})' for b, c, p in declared)}.", []


def lineage(route: Route, state: PlatformState, limit: int) -> Reply:
    assert route.slots.order is not None
    order = route.slots.order
    ids = state.orders.get(order)
    if not ids:
        return f"ORA has seen no event of order {order}.", []
    first = state.hops[ids[0]]
    chain = state.lineage(first.id)
    causes = " <- ".join(f"{hop.topic} by {hop.source} [{hop.id}]" for hop in chain)
    ends = "a market event" if chain[-1].topic.startswith("market.") else "an event without a cause"
    outcome = [state.hops[i] for i in ids[1:]]
    then = (
        "; then " + ", ".join(f"{hop.topic.rsplit('.', 1)[-1]} [{hop.id}]" for hop in outcome[:limit])
        if outcome
        else ""
    )
    return f"Order {order}: {causes} (it starts at {ends}){then}.", [hop.id for hop in chain] + [
        h.id for h in outcome[:limit]
    ]


def activity(route: Route, state: PlatformState, limit: int) -> Reply:
    lines, cited = [], []
    for bot in _named(route, state):
        last = f" (last fill [{bot.last_fill}])" if bot.last_fill else ""
        rejected = ""
        if bot.last_rejection is not None:
            order, eid = bot.last_rejection
            rejected = f"; last rejection: {order.order_id}: {order.reason} [{eid}]"
            cited.append(eid)
        partial = f" (and {bot.partial} partly filled, then cancelled)" if bot.partial else ""
        lines.append(
            f"{bot.bot_id}: {bot.signals} signals, {bot.orders} orders, {bot.fills} fills{partial},"
            f" {bot.rejections} rejections{last}{rejected}."
        )
        if bot.last_fill:
            cited.append(bot.last_fill)
    return " ".join(lines), cited


def help_(route: Route, state: PlatformState, limit: int) -> Reply:
    from .intents import INTENTS

    asks = "; ".join(i.suggestion for i in INTENTS if i.name != "help")
    return (
        "I answer from what happened on the platform's bus: positions and PnL per bot, the last risk"
        " alerts, why a bot is blocked and which bots are, who publishes or subscribes a topic, the"
        f" lineage of an order and a bot's activity. For example: {asks}",
        [],
    )


ANSWERS: dict[str, Callable[[Route, PlatformState, int], Reply]] = {
    "positions": positions,
    "pnl": pnl,
    "alerts": alerts,
    "why_blocked": why_blocked,
    "blocked_bots": blocked_bots,
    "publishers": publishers,
    "subscribers": subscribers,
    "lineage": lineage,
    "activity": activity,
    "help": help_,
}
