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
    """The registry (19 bots, host services) and the installed plugins with where they come from."""
    from dataclasses import asdict

    from .plugins import Plugins
    from .registry import load_registry

    registry = load_registry()
    plugins = Plugins.discover() if getattr(args, "plugins", True) else Plugins()
    plugins.extend_registry(registry)
    if args.json:
        _print_json({**registry.to_dict(), "plugins": [asdict(info) for info in plugins.infos()]})
        return 0
    for category in registry.categories:
        entries = registry.by_category(category.id)
        if not entries:
            continue
        print(f"{category.name} ({category.id})")
        for bot in entries:
            period = f"  [{bot.holding_period}]" if bot.holding_period else ""
            print(f"  {bot.code:4} {bot.name:12} {bot.description}{period}")
    infos = plugins.infos()
    print(f"\nInstalled plugins ({len(infos)})")
    for info in infos:
        provides = ", ".join(info.bot_types) or "-"
        status = f"BROKEN: {info.error}" if info.error else f"bot types: {provides}"
        print(f"  {info.name:12} {status}  [{info.source}]")
    return 0


def _selfcheck(args: argparse.Namespace) -> int:
    from .api import selfcheck

    result = asyncio.run(selfcheck())
    _bots(argparse.Namespace(json=False, plugins=False))
    print()
    _print_json({"bus_selfcheck": result})
    return 0 if result["ok"] else 1


# -- check / config show / init ----------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    """Load the config, let the installed plugins extend the registry, report every finding."""
    from .wiring import check_config, format_findings, has_errors

    findings = check_config(args.config)
    if args.json:
        _print_json([finding.to_dict() for finding in findings])
    else:
        print(format_findings(findings))
    return 1 if has_errors(findings) else 0


_SECRETS = ("password", "token")


def _config_show(args: argparse.Namespace) -> int:
    """The effective config (files merged, environment applied) as TOML; secrets masked."""
    import tomllib

    import tomli_w

    from .errors import ConfigError
    from .settings import load_config

    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    text = loaded.config.to_toml()
    if not args.show_secrets:
        data = tomllib.loads(text)
        nats = data.get("backend", {}).get("nats", {})
        for key in _SECRETS:
            if key in nats:
                nats[key] = "***"
        text = tomli_w.dumps(data)
    print(text, end="")
    return 0


def _init(args: argparse.Namespace) -> int:
    """Write a starter config; an existing file is kept unless ``--force``."""
    from pathlib import Path

    import tomli_w

    from .examples import starter_config

    path = Path(args.path)
    if path.is_dir():
        print(f"error: {path}: is a directory", file=sys.stderr)
        return 1
    if path.exists() and not args.force:
        print(f"error: {path}: already exists (use --force to overwrite it)", file=sys.stderr)
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(starter_config(args.backend)), encoding="utf-8")
    print(f"wrote {path}; check it with: citarion-host check --config {path}")
    return 0


# -- nats-config ------------------------------------------------------------------------------------


def _nats_config(args: argparse.Namespace) -> int:
    """Write nats-server configs with one NATS user per bot (see ``natsconf``); secrets never printed."""
    from pathlib import Path

    from .errors import ConfigError
    from .natsconf import DeployOptions, write_deployment
    from .natsserver import NatsServerError
    from .settings import load_config

    options = DeployOptions(
        cluster=args.cluster,
        host=args.host,
        hosts=tuple(h for h in (args.hosts or "").split(",") if h),
        port=args.port,
        monitor_port=args.monitor_port,
        route_port=args.route_port,
        store_dir=args.store_dir,
        name=args.name,
        rotate=args.rotate,
        check=not args.no_check,
    )
    try:
        loaded = load_config(args.config)
        report = write_deployment(loaded, Path(args.out), options)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    except NatsServerError as exc:
        print(f"error: {exc} (or pass --no-check)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in report.written:
        print(f"wrote {path}")
    secrets_dir = Path(args.out) / "secrets"
    print(
        f"secrets in {secrets_dir}/ (mode 0700, files 0600): {report.users} NKey users,"
        f" {len(report.seeds_created)} seeds created, {len(report.seeds_reused)} reused"
    )
    for path in report.tightened:
        print(f"warning: {path} was readable by others: permissions tightened", file=sys.stderr)
    for path in report.unused_seeds:
        print(f"note: {path} belongs to no bot of the config (not deleted)", file=sys.stderr)
    if report.checked:
        print(f"checked with nats-server -t: {', '.join(p.name for p in report.checked)}")
    servers = ", ".join(node.url for node in report.nodes)
    print(f"servers: {servers}")
    return 0


# -- replay -----------------------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    """Print the stored events matching ``--topic`` between ``--since`` and ``--until``."""
    from datetime import UTC, datetime

    from .errors import BusError, ConfigError
    from .replay import parse_time, print_events, replay

    try:
        now = datetime.now(UTC)
        since = parse_time(args.since, now) if args.since else None
        until = parse_time(args.until, now) if args.until else None
        settings = _replay_settings(args)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def run() -> int:
        count = await print_events(replay(settings, args.topic, since, until), as_json=args.json)
        if not args.json:
            print(f"{count} event(s)", file=sys.stderr)
        return 0

    try:
        return asyncio.run(run())
    except (BusError, OSError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _replay_settings(args: argparse.Namespace) -> Any:
    """NATS settings from ``--config`` (its ``[backend.nats]``, credentials included), overridden by
    ``--servers``/``--stream`` when given; without a config, those flags or their defaults."""
    from .bus.config import NatsSettings
    from .settings import load_config

    overrides = {
        key: value for key, value in (("servers", args.servers), ("stream", args.stream)) if value is not None
    }
    if getattr(args, "config", None):
        base = load_config(args.config).config.backend.nats
        return base.model_copy(update=overrides)
    return NatsSettings(**overrides)


# -- run ------------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    """Run the host until SIGINT/SIGTERM or until ``[host] stop_on`` completes; print the summary."""
    from pathlib import Path

    from .app import run_host
    from .errors import CitarionError, ConfigError
    from .settings import load_config

    if not args.config:
        print("error: run needs --config FILE (try: citarion-host init dev.toml)", file=sys.stderr)
        return 2
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    logging_settings = loaded.config.logging
    configure_logging(args.log_level or logging_settings.level, args.log_format or logging_settings.format)
    summary_json = Path(args.summary_json) if getattr(args, "summary_json", None) else None
    try:
        asyncio.run(run_host(loaded, reload=args.reload, summary_json=summary_json))
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    except CitarionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _print_problems(exc: Exception) -> None:
    problems = getattr(exc, "problems", None) or [str(exc)]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)


# -- parser -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citarion-host",
        description="Run CITARION trading bots as plugins wired over an event bus.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level", default=None, help="logging level (default: the config's, else WARNING)"
    )
    parser.add_argument("--log-format", choices=["text", "json"], default=None, help="log line format")
    _add_run_arguments(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the bots of a config (the default command)",
        description="Start every enabled bot of --config on its backend and run until SIGINT/SIGTERM or"
        " until every [host] stop_on publisher has reported; then drain, stop and print the summary."
        " `citarion-host --config F` is the same as `citarion-host run --config F`.",
    )
    _add_run_arguments(run)
    run.set_defaults(func=_run)

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

    check = commands.add_parser(
        "check",
        help="check a config's wiring against the registry and the installed plugins",
        description="Load a config, resolve every bot's code, plugin and params, check its patterns"
        " against the registry's rules and the topology (feeds, loops, queue groups). Prints every"
        " finding; exits 1 if any is an error (warnings alone exit 0).",
    )
    check.add_argument("--config", required=True, help="the config file (TOML)")
    check.add_argument("--json", action="store_true", help="print the findings as a JSON list")
    check.set_defaults(func=_check)

    config = commands.add_parser("config", help="inspect a config", description="Inspect a config.")
    config_commands = config.add_subparsers(dest="config_command", metavar="COMMAND")

    def config_help(_args: argparse.Namespace) -> int:
        config.print_help()
        return 2

    config.set_defaults(func=config_help)
    show = config_commands.add_parser(
        "show",
        help="print the effective config as TOML",
        description="Print the config after includes and CITARION_* environment overrides, with every"
        " default filled in. NATS password and token are masked unless --show-secrets.",
    )
    show.add_argument("--config", required=True, help="the config file (TOML)")
    show.add_argument("--show-secrets", action="store_true", help="print passwords and tokens as they are")
    show.set_defaults(func=_config_show)

    init = commands.add_parser(
        "init",
        help="write a starter config",
        description="Write a small valid config (a synthetic ticker feed and a logger) to PATH.",
    )
    init.add_argument("path", nargs="?", default="citarion.toml", help="where (default: citarion.toml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument("--backend", choices=["memory", "nats"], default="memory", help="the event bus")
    init.set_defaults(func=_init)

    nats_config = commands.add_parser(
        "nats-config",
        help="write nats-server configs with one NATS user per bot (server-enforced permissions)",
        description="Write a nats-server deployment for --config into --out: citarion-auth.conf (every"
        " bot a NATS NKey user allowed exactly its declared patterns plus its inbox and JetStream"
        " consumer; a host user that manages the stream), one server config (or --cluster N routed"
        " ones), citarion-host.toml, and secrets/ (seeds and route password, mode 0600, never"
        " printed). Existing seeds are reused unless --rotate. See docs/nats-auth.md.",
    )
    nats_config.add_argument("--config", required=True, help="the topology config file (TOML)")
    nats_config.add_argument("--out", required=True, help="directory to write into (created if missing)")
    nats_config.add_argument(
        "--cluster", type=int, default=1, metavar="N", help="N routed JetStream servers (default: 1)"
    )
    nats_config.add_argument("--host", default="127.0.0.1", help="address every server binds to")
    nats_config.add_argument(
        "--hosts", default=None, help="comma-separated address of each server (then all use the same ports)"
    )
    nats_config.add_argument("--port", type=int, default=4222, help="client port of server 1 (then +1...)")
    nats_config.add_argument("--monitor-port", type=int, default=8222, help="monitoring port of server 1")
    nats_config.add_argument("--route-port", type=int, default=6222, help="cluster route port of server 1")
    nats_config.add_argument(
        "--store-dir", default="/var/lib/citarion-nats", help="JetStream store root (a dir per server in it)"
    )
    nats_config.add_argument("--name", default="citarion", help="cluster name and server name prefix")
    nats_config.add_argument("--rotate", action="store_true", help="new seeds and route password for all")
    nats_config.add_argument("--no-check", action="store_true", help="skip the `nats-server -t` check")
    nats_config.set_defaults(func=_nats_config)

    replay_ = commands.add_parser(
        "replay",
        help="print or export stored events (NATS JetStream)",
        description="Read the events stored in the JetStream stream that match --topic, from --since"
        " (default: the beginning) to --until (default: now), oldest first.",
    )
    replay_.add_argument("--topic", default=">", help="topic pattern, NATS wildcards (default: >)")
    replay_.add_argument("--since", help="start: a duration before now (15m, 2h, 1d) or an ISO time")
    replay_.add_argument("--until", help="end: a duration before now or an ISO time (default: now)")
    replay_.add_argument("--json", action="store_true", help="one event per line, as its wire JSON")
    replay_.add_argument(
        "--config", help="read [backend.nats] (servers, stream, credentials) from this config"
    )
    replay_.add_argument(
        "--servers", nargs="+", default=None, help="NATS server URLs (default: the config's, else localhost)"
    )
    replay_.add_argument(
        "--stream", default=None, help="JetStream stream (default: the config's, else citarion-events)"
    )
    replay_.set_defaults(func=_replay)
    return parser


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=argparse.SUPPRESS, help="the config file (TOML) to run")
    reload = parser.add_mutually_exclusive_group()
    reload.add_argument(
        "--reload",
        dest="reload",
        action="store_true",
        default=None,
        help="watch the config and apply changes",
    )
    reload.add_argument("--no-reload", dest="reload", action="store_false", help="ignore [host] reload")
    parser.add_argument("--summary-json", default=None, help="also write the run summary to this JSON file")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level or "WARNING", args.log_format or "text")
    func: Command | None = getattr(args, "func", None)
    if func is None:
        if getattr(args, "config", None):
            return _run(args)  # `citarion-host --config F` runs
        parser.print_help()
        return 2
    if func is _run and not hasattr(args, "config"):
        args.config = None
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
