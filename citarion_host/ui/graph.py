"""The wiring graph the topology page draws: bots -> patterns -> bots, with the check's findings on it.

Three columns. Left, each enabled bot that publishes (and the host, for ``system.*``); middle, every
pattern some bot subscribes to, plus each publish pattern nobody receives; right, each bot that
subscribes. An edge goes from a publisher to a pattern when one of its publish patterns overlaps it
(its events can match), and from a pattern to each bot subscribing to it. So a path left to right is
"these events can reach that bot".

A finding of ``check`` (``Host.findings()``: a subscription nothing feeds, a publication nobody
receives, a bot hearing its own events, an uneven queue group) marks the nodes and edges it is about,
with its text, so the page can colour them and say why. Positions are columns and ranks only; the
page (plotly) draws them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..findings import Finding
from ..registry import BotRegistry
from ..settings import BotConfig
from ..topics import overlaps
from ..wiring import HOST_PUBLISHES

__all__ = ["topology_graph"]

_INDEXED = re.compile(r"^(publish|subscribe)\[(\d+)\]$")
HOST = "host"


@dataclass
class _Node:
    id: str
    label: str
    column: int
    kind: str  # "bot" | "host" | "pattern"
    bot: str | None = None
    category: str | None = None
    findings: list[str] = field(default_factory=list)

    def to_dict(self, rank: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "column": self.column,
            "rank": rank,
            "kind": self.kind,
            "bot": self.bot,
            "category": self.category,
            "marked": bool(self.findings),
            "findings": self.findings,
        }


def topology_graph(
    bots: Sequence[BotConfig], findings: Sequence[Finding], registry: BotRegistry
) -> dict[str, Any]:
    """Nodes (with column and rank), edges and the findings, as the page's JSON."""
    enabled = [bot for bot in bots if bot.enabled]
    nodes: dict[str, _Node] = {}
    edges: dict[tuple[str, str], list[str]] = {}

    def category(code: str) -> str | None:
        try:
            return registry.entry(code).category
        except LookupError:
            return None

    subscribed = list(dict.fromkeys(p for bot in enabled for p in bot.subscribe))
    publishers: list[tuple[str, str | None, tuple[str, ...]]] = [
        (bot.id, bot.code, tuple(bot.publish)) for bot in enabled if bot.publish
    ]
    publishers.append((HOST, None, HOST_PUBLISHES))
    orphans = [
        p for _, _, patterns in publishers for p in patterns if not any(overlaps(p, s) for s in subscribed)
    ]
    for bot_id, code, _ in publishers:
        label = f"{bot_id} ({code})" if code else "host (system.*)"
        nodes[f"pub:{bot_id}"] = _Node(
            f"pub:{bot_id}", label, 0, "bot" if code else "host", bot_id, category(code) if code else None
        )
    for pattern in dict.fromkeys([*subscribed, *orphans]):
        nodes[f"pat:{pattern}"] = _Node(f"pat:{pattern}", pattern, 1, "pattern")
    for bot in enabled:
        if bot.subscribe:
            nodes[f"sub:{bot.id}"] = _Node(
                f"sub:{bot.id}", f"{bot.id} ({bot.code})", 2, "bot", bot.id, category(bot.code)
            )
    for bot_id, _, patterns in publishers:
        for pattern in subscribed:
            if any(overlaps(p, pattern) for p in patterns):
                edges[(f"pub:{bot_id}", f"pat:{pattern}")] = []
        for pattern in patterns:
            if pattern in orphans:
                edges[(f"pub:{bot_id}", f"pat:{pattern}")] = []
    for bot in enabled:
        for pattern in dict.fromkeys(bot.subscribe):
            edges[(f"pat:{pattern}", f"sub:{bot.id}")] = []
    by_id = {bot.id: bot for bot in enabled}
    for finding in findings:
        _mark(finding, by_id.get(finding.bot_id or ""), nodes, edges)
    ranks: dict[int, int] = {}
    node_list = []
    for node in nodes.values():
        rank = ranks.get(node.column, 0)
        ranks[node.column] = rank + 1
        node_list.append(node.to_dict(rank))
    return {
        "nodes": node_list,
        "edges": [
            {"source": s, "target": t, "marked": bool(notes), "findings": notes}
            for (s, t), notes in edges.items()
        ],
        "findings": [f.to_dict() | {"text": str(f)} for f in findings],
        "columns": ["publishes", "patterns", "subscribes"],
    }


def _mark(
    finding: Finding,
    bot: BotConfig | None,
    nodes: dict[str, _Node],
    edges: dict[tuple[str, str], list[str]],
) -> None:
    text = str(finding)
    if bot is None:
        return
    match = _INDEXED.match(finding.key)
    touched: list[str] = []
    if match is None:  # queue, code, plugin...: the bot itself
        touched += [f"pub:{bot.id}", f"sub:{bot.id}"]
    elif match.group(1) == "subscribe" and int(match.group(2)) < len(bot.subscribe):
        pattern = bot.subscribe[int(match.group(2))]
        touched += [f"pat:{pattern}", f"sub:{bot.id}"]
        _note(edges, (f"pat:{pattern}", f"sub:{bot.id}"), text)
    elif match.group(1) == "publish" and int(match.group(2)) < len(bot.publish):
        pattern = bot.publish[int(match.group(2))]
        touched += [f"pub:{bot.id}", f"pat:{pattern}"]
        _note(edges, (f"pub:{bot.id}", f"pat:{pattern}"), text)
        for own in bot.subscribe:  # a self-feeding loop: the way back to the bot
            if overlaps(pattern, own):
                touched.append(f"pat:{own}")
                _note(edges, (f"pub:{bot.id}", f"pat:{own}"), text)
                _note(edges, (f"pat:{own}", f"sub:{bot.id}"), text)
    for node_id in touched:
        node = nodes.get(node_id)
        if node is not None and text not in node.findings:
            node.findings.append(text)


def _note(edges: dict[tuple[str, str], list[str]], edge: tuple[str, str], text: str) -> None:
    notes = edges.get(edge)
    if notes is not None and text not in notes:
        notes.append(text)
