"""The ``citarion-host`` command line.

Each subcommand is one small function taking the parsed arguments and returning an exit code, so
the commands are testable without a subprocess (``main([...])``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from .logs import configure_logging

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# -- bench ----------------------------------------------------------------------------------------


def _bench(args: argparse.Namespace) -> int:
    from . import bench

    if args.backend == "memory":
        result = bench.run(bench.run_memory_bench(count=args.events, fanout_count=args.fanout_events))
    else:
        from .bench_nats import run_nats_bench

        result = bench.run(run_nats_bench(count=args.events, mode=args.mode, servers=args.servers))
    _print_json(result)
    return 0


# -- bots / selfcheck -------------------------------------------------------------------------------


def _bots(args: argparse.Namespace) -> int:
    from .registry import load_registry

    registry = load_registry()
    if args.json:
        _print_json(registry.to_dict())
        return 0
    for category in registry.categories:
        bots = registry.by_category(category.id)
        if not bots:
            continue
        print(f"{category.name} ({category.id})")
        for bot in bots:
            period = f"  [{bot.holding_period}]" if bot.holding_period else ""
            print(f"  {bot.code:4} {bot.name:12} {bot.description}{period}")
    return 0


async def _selfcheck_bus() -> dict[str, Any]:
    """Publish through the main helpers, seed-style, on the in-memory bus; check what arrives."""
    from . import api

    received: list[str] = []

    async def note(event: Any) -> None:
        received.append(event.topic)

    bus = await api.manager.initialize({"type": "memory"})
    try:
        await api.subscribe_to_signals(note)
        await api.subscribe_to_orders(note)
        await api.subscribe_to_market(note)
        await api.subscribe_to_risk_alerts(note)
        signal = {"symbol": "BTCUSDT", "exchange": "binance", "direction": "LONG", "confidence": 0.85}
        await api.publish_signal("GRD", {**signal, "entryPrice": 50000, "stopLoss": 48000})
        order = {
            "orderId": "12345",
            "symbol": "BTCUSDT",
            "exchange": "binance",
            "side": "BUY",
            "type": "LIMIT",
            "price": 50000,
            "quantity": 0.01,
            "status": "FILLED",
        }
        await api.publish_order("GRD", order, "filled")
        ticker = {"symbol": "BTCUSDT", "exchange": "binance", "bid": 49999, "ask": 50001, "last": 50000}
        await api.publish_ticker("LUM", ticker)
        alert = {"kind": "drawdown", "severity": "critical", "message": "self-check"}
        await api.publish_risk_alert("RSK", alert)
        return {"published": bus.published, "received": received, "ok": len(received) == 4}
    finally:
        await api.manager.shutdown()


def _selfcheck(args: argparse.Namespace) -> int:
    result = asyncio.run(_selfcheck_bus())
    _bots(argparse.Namespace(json=False))
    print()
    _print_json({"bus_selfcheck": result})
    return 0 if result["ok"] else 1


# -- parser -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citarion-host",
        description="Run CITARION trading bots as plugins wired over an event bus.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default: WARNING)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text", help="log line format")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    bench = commands.add_parser(
        "bench",
        help="measure bus throughput and latency against a baseline in the same run",
        description="Publish typed events through the bus and print JSON figures with a baseline.",
    )
    bench.add_argument("--backend", choices=["memory", "nats"], default="memory")
    bench.add_argument("--events", type=int, default=200_000, help="events in the one-to-one case")
    bench.add_argument("--fanout-events", type=int, default=50_000, help="events in the fan-out case")
    bench.add_argument(
        "--mode", choices=["core", "jetstream", "both"], default="both", help="NATS: which path to measure"
    )
    bench.add_argument(
        "--servers",
        nargs="*",
        default=None,
        help="NATS: server URLs to use; default: start a private nats-server for the run",
    )
    bench.set_defaults(func=_bench)

    bots = commands.add_parser("bots", help="list the bot registry", description="List the known bots.")
    bots.add_argument("--json", action="store_true", help="print JSON")
    bots.set_defaults(func=_bots)

    selfcheck = commands.add_parser(
        "selfcheck",
        help="print the registry and check the in-memory bus end to end",
        description="Print the bot registry, publish through every helper on the memory bus, report.",
    )
    selfcheck.set_defaults(func=_selfcheck)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    func: Command | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
