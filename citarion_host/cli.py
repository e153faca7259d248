"""The ``citarion-host`` command line.

Each subcommand is one small function taking the parsed arguments and returning an exit code, so
the commands are testable without a subprocess (``main([...])``).

Bad input never ends in a traceback: every argument is checked by its ``type=`` function (one
``citarion-host <command>: error: ...`` line, exit 2), config problems print one ``error:`` line
each (exit 1), and anything unexpected still prints one line (exit 1; ``--log-level DEBUG`` logs
the traceback). Credentials in URLs are masked in everything printed (``redact.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from . import __version__
from .logs import configure_logging
from .redact import mask_config, mask_text

__all__ = ["main"]

Command = Callable[[argparse.Namespace], int]

log = logging.getLogger("citarion_host.cli")


def _error(message: str) -> None:
    """One ``error:`` line on stderr, credentials masked."""
    print(f"error: {mask_text(' '.join(str(message).split()))}", file=sys.stderr)


# -- argument types: each refuses a bad value with one line (argparse adds the argument's name) --

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_NATS_SCHEMES = ("nats", "tls", "ws", "wss")
_STREAM = re.compile(r"^[^.*>\s]+$")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _log_level(text: str) -> str:
    if text.upper() not in _LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(_LOG_LEVELS)} (any case)")
    return text.upper()


def _nats_url(text: str) -> str:
    """``nats://host:port`` (also ``tls://``, ``ws://``, ``wss://``, or plain ``host:port``)."""
    try:
        parts = urlsplit(text if "://" in text else f"nats://{text}")
        port = parts.port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a server URL: {mask_text(text)!r} ({exc})") from None
    if parts.scheme not in _NATS_SCHEMES or not parts.hostname or parts.path not in ("", "/"):
        schemes = ", ".join(f"{scheme}://" for scheme in _NATS_SCHEMES)
        raise argparse.ArgumentTypeError(
            f"not a NATS server URL: {mask_text(text)!r} (expected {schemes} host[:port])"
        )
    if port == 0:
        raise argparse.ArgumentTypeError(f"port 0 in {mask_text(text)!r}")
    return text


def _pattern(text: str) -> str:
    from .topics import TopicError, split_pattern

    try:
        split_pattern(text)
    except TopicError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _stream(text: str) -> str:
    if not _STREAM.match(text):
        raise argparse.ArgumentTypeError(f"{text!r}: a stream name has no '.', '*', '>' or whitespace")
    return text


def _path(text: str) -> str:
    if not text or "\x00" in text:
        raise argparse.ArgumentTypeError("not a file name" + (" (NUL character)" if text else " (empty)"))
    return text


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


# -- bench ----------------------------------------------------------------------------------------


def _bench(args: argparse.Namespace) -> int:
    """Run the chosen cases; tables as each case finishes (or one JSON document with ``--json``)."""
    from pathlib import Path

    from .bench import BenchError
    from .bench_run import BenchOptions, run_bench
    from .errors import CitarionError

    if args.log_level is None:  # the demo's bots log their alerts: not what a benchmark reader wants
        configure_logging("CRITICAL", args.log_format or "text")
    options = BenchOptions(
        rounds=args.rounds,
        events=args.events,
        fanout_events=args.fanout_events,
        slow_events=args.slow_events,
        core_events=args.core_events,
        jetstream_events=args.jetstream_events,
        latency_seconds=args.latency_seconds,
        bots=args.bots,
        rates=tuple(args.rates),
        loop=args.loop,
        config=Path(args.config) if args.config else BenchOptions().config,
    )
    cases = list(dict.fromkeys(args.case or list(_BENCH_CASES)))
    progress = None if args.json else (lambda text: print(text + "\n", flush=True))
    try:
        result = run_bench(cases, options, progress=progress)
    except (BenchError, CitarionError, OSError) as exc:
        print(f"error: bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(result)
    return 0


_BENCH_CASES = (
    "memory",
    "slow-subscriber",
    "core",
    "jetstream",
    "latency",
    "demo",
    "loop",
    "hosts",
    "fleet",
    "state",
    "ui",
)


def _ids(text: str) -> list[str]:
    ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise argparse.ArgumentTypeError(f"no bot id in {text!r} (comma-separated ids)")
    return ids


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _add_bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument(
        "--case",
        action="append",
        choices=_BENCH_CASES,
        help="a case to run (repeatable; default: all): memory, slow-subscriber (--slow-events of mixed"
        " priorities to one slow subscriber: peak RSS, urgent events lost, drops accounted for), core"
        " (core NATS), jetstream (publish"
        " throughput), latency (fixed rates), demo (memory vs JetStream, and the run's NATS traffic"
        " through raw nats-py and through the bus alone; the store's round trip for one event),"
        " loop (asyncio vs uvloop),"
        " fleet (check, start and reload --bots idle bots), ui (the demo with the dashboard off / on"
        " with a browser / on with 20 SSE clients)",
    )
    bench.add_argument(
        "--rounds", type=_positive_int, default=3, help="interleaved rounds per case (default: 3)"
    )
    bench.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    bench.add_argument(
        "--loop",
        choices=["auto", "asyncio", "uvloop"],
        default="auto",
        help="event loop of every case but 'loop', as [host] event_loop (default: auto, as the host)",
    )
    sizes = bench.add_argument_group("sizes")
    sizes.add_argument(
        "--events", type=_positive_int, default=200_000, help="memory one-to-one events per round"
    )
    sizes.add_argument(
        "--fanout-events", type=_positive_int, default=50_000, help="memory fan-out events per round"
    )
    sizes.add_argument(
        "--slow-events",
        type=_positive_int,
        default=1_000_000,
        help="slow-subscriber: events published to the slow subscriber (default: 1000000)",
    )
    sizes.add_argument(
        "--core-events", type=_positive_int, default=100_000, help="core NATS events per round"
    )
    sizes.add_argument(
        "--jetstream-events",
        type=_positive_int,
        default=10_000,
        help="JetStream per-event publishes per round (the batch case: twice as many)",
    )
    sizes.add_argument("--bots", type=_positive_int, default=1_000, help="fleet: bots (3 patterns each)")
    sizes.add_argument(
        "--latency-seconds",
        type=_positive_float,
        default=1.0,
        help="latency: seconds of events per rate, path and round (default: 1.0)",
    )
    sizes.add_argument(
        "--rates",
        type=_positive_int,
        nargs="+",
        default=[1_000, 5_000, 20_000],
        help="latency: events/s to hold (default: 1000 5000 20000)",
    )
    bench.add_argument(
        "--config", default=None, help="demo/loop/ui: the config to run (default: configs/dev.toml)"
    )


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


def _config_show(args: argparse.Namespace) -> int:
    """The effective config (files merged, environment applied) as TOML; secrets masked: values of
    secret-looking keys (``password``, ``token``...) and the credentials of every URL."""
    import tomllib

    import tomli_w

    from .errors import ConfigError
    from .settings import load_config

    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    text = loaded.config.to_toml()
    if not args.show_secrets:
        text = tomli_w.dumps(mask_config(tomllib.loads(text)))
    print(text, end="")
    return 0


def _init(args: argparse.Namespace) -> int:
    """Write a starter config; an existing file is kept unless ``--force``."""
    import tomli_w

    from .examples import starter_config

    path = Path(args.path)
    if path.is_dir():
        print(f"error: {path}: is a directory", file=sys.stderr)
        return 1
    if path.exists() and not args.force:
        print(f"error: {path}: already exists (use --force to overwrite it)", file=sys.stderr)
        return 1
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tomli_w.dumps(starter_config(args.backend)), encoding="utf-8")
    except OSError as exc:
        _error(f"{path}: cannot write: {exc.strerror or exc}")
        return 1
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
        _error(str(exc))
        return 2

    async def run() -> int:
        count = await print_events(replay(settings, args.topic, since, until), as_json=args.json)
        if not args.json:
            print(f"{count} event(s)", file=sys.stderr)
        return 0

    try:
        return asyncio.run(run())
    except (BusError, OSError, TimeoutError) as exc:
        _error(str(exc) or type(exc).__name__)
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

    from . import loops
    from .app import run_host
    from .errors import CitarionError, ConfigError
    from .settings import load_config
    from .topology import Placement

    if not args.config:
        _error("run needs --config FILE (try: citarion-host init dev.toml)")
        return 2
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    summary_json = Path(args.summary_json) if getattr(args, "summary_json", None) else None
    if summary_json is not None and not summary_json.parent.is_dir():
        _error(f"--summary-json {summary_json}: no such directory {summary_json.parent}")
        return 2
    if getattr(args, "ui", False):
        try:
            loaded = _with_ui(loaded)
        except ConfigError as exc:
            _print_problems(exc)
            return 1
    logging_settings = loaded.config.logging
    configure_logging(args.log_level or logging_settings.level, args.log_format or logging_settings.format)
    placement = Placement.of(args.only, args.excluded or ())
    speed = getattr(args, "speed", None)
    try:
        loops.run(
            run_host(loaded, reload=args.reload, summary_json=summary_json, placement=placement, speed=speed),
            loaded.config.host.event_loop,
        )
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    except (CitarionError, OSError) as exc:
        _error(str(exc) or type(exc).__name__)
        return 1
    return 0


# -- state ----------------------------------------------------------------------------------------


def _state(args: argparse.Namespace) -> int:
    """``state show`` / ``state reset``: the stored bot states of a config (see ``statecmd``)."""
    from .errors import BusError, ConfigError, StateError
    from .settings import load_config
    from .statecmd import format_rows, reset_states, show_states

    try:
        config = load_config(args.config).config
        if args.state_command == "show":
            rows, where = asyncio.run(show_states(config, args.bot))
            if args.json:
                _print_json(rows)
            else:
                print(format_rows(rows, where, with_state=bool(args.bot)))
            return 1 if any("error" in row for row in rows) else 0  # a script sees it too
        removed, where = asyncio.run(reset_states(config, args.bot))
        for bot_id in removed:
            print(f"reset {bot_id} ({where})")
        if not removed:
            print(f"no stored state in {where}")
        return 0
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    except (StateError, BusError, OSError, TimeoutError) as exc:
        _error(str(exc) or type(exc).__name__)
        return 1


def _with_ui(loaded: Any) -> Any:
    """``loaded`` with ``[ui] enabled = true`` (``run --ui``), validated like the file's value."""
    from dataclasses import replace

    from pydantic import ValidationError

    from .errors import ConfigError
    from .findings import Finding
    from .settings import UiSettings

    try:
        ui = UiSettings.model_validate({**loaded.config.ui.model_dump(), "enabled": True})
    except ValidationError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError.of(Finding("error", str(loaded.path), None, "ui", f"--ui: {message}")) from None
    return replace(loaded, config=loaded.config.model_copy(update={"ui": ui}))


def _asyncapi(args: argparse.Namespace) -> int:
    """Write the AsyncAPI 3.0 document of ``--config``'s topology (stdout, or ``--out``)."""
    from .errors import ConfigError
    from .payloads import BUILTIN_PAYLOADS
    from .plugins import Plugins
    from .settings import load_config
    from .ui.asyncapi import asyncapi_document

    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    types: dict[str, Any] = dict(BUILTIN_PAYLOADS)
    for mapping in Plugins.discover().manager.hook.citarion_payload_types():
        types.update(mapping)
    text = json.dumps(asyncapi_document(loaded.config, types), indent=2)
    if args.out is None:
        print(text)
        return 0
    try:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        _error(f"{args.out}: cannot write: {exc.strerror or exc}")
        return 1
    print(f"wrote {args.out}")
    return 0


def _print_problems(exc: Exception) -> None:
    problems = getattr(exc, "problems", None) or [str(exc)]
    for problem in problems:
        _error(str(problem))


# -- parser -----------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``citarion-host bench: error: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {mask_text(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="citarion-host",
        description="Run CITARION trading bots as plugins wired over an event bus.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        type=_log_level,
        default=None,
        help="logging level: DEBUG, INFO, WARNING, ERROR (default: the config's, else WARNING)",
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
        help="benchmarks: the bus against like-for-like baselines, same run, interleaved rounds",
        description="Run benchmark cases and print a table per comparison (medians of interleaved"
        " rounds, with their spread). Each table names what it compares; baselines do the same work as"
        " the path they are compared with. NATS cases start a private nats-server. Method and latest"
        " figures: docs/performance.md.",
    )
    _add_bench_arguments(bench)
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
    check.add_argument("--config", required=True, type=_path, help="the config file (TOML)")
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
        " default filled in. Passwords, tokens and credentials inside URLs are masked unless --show-secrets.",
    )
    show.add_argument("--config", required=True, type=_path, help="the config file (TOML)")
    show.add_argument(
        "--show-secrets", action="store_true", help="print passwords, tokens and URL credentials as they are"
    )
    show.set_defaults(func=_config_show)

    init = commands.add_parser(
        "init",
        help="write a starter config",
        description="Write a small valid config (a synthetic ticker feed and a logger) to PATH.",
    )
    init.add_argument(
        "path", nargs="?", type=_path, default="citarion.toml", help="where (default: citarion.toml)"
    )
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
    replay_.add_argument(
        "--topic", type=_pattern, default=">", help="topic pattern, NATS wildcards (default: >)"
    )
    replay_.add_argument("--since", help="start: a duration before now (15m, 2h, 1d) or an ISO time")
    replay_.add_argument("--until", help="end: a duration before now or an ISO time (default: now)")
    replay_.add_argument("--json", action="store_true", help="one event per line, as its wire JSON")
    replay_.add_argument(
        "--config", type=_path, help="read [backend.nats] (servers, stream, credentials) from this config"
    )
    replay_.add_argument(
        "--servers",
        type=_nats_url,
        nargs="+",
        default=None,
        help="NATS server URLs (default: the config's, else localhost)",
    )
    replay_.add_argument(
        "--stream",
        type=_stream,
        default=None,
        help="JetStream stream (default: the config's, else citarion-events)",
    )
    replay_.set_defaults(func=_replay)

    explain = commands.add_parser(
        "explain",
        help="print an event's chain of causes back to the market event that started it",
        description="Follow causationId from EVENT_ID back to its first cause, one line per hop"
        " (topic, source, time, data time, key fields), reading a run's record or the JetStream stream.",
    )
    explain.add_argument("event_id", metavar="EVENT_ID", help="the id of the event to explain (e.g. a fill)")
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("--record", help="a run's JSON-lines record ([host] record)")
    source.add_argument("--config", help="read the stream of this config's [backend.nats]")
    explain.add_argument("--since", help="with --config: read from this long ago (15m, 2h) or an ISO time")
    explain.set_defaults(func=_explain, servers=None, stream=None)

    ask = commands.add_parser(
        "ask",
        help="ask the platform's assistant (ORA) a question",
        description="Ask ORA: over the bus when the config runs on NATS (the host must be running), else"
        " from the config's record, replayed into its ORA (citarion_host/ask.py). Exit 0 answered,"
        " 3 refused, 1 nobody to ask.",
    )
    ask.add_argument("question", help='the question, e.g. "why is scale blocked?"')
    ask.add_argument("--config", type=_path, required=True, help="the config whose ORA to ask")
    ask.add_argument(
        "--record", type=_path, default=None, help="replay this record instead of asking the bus"
    )
    ask.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer on NATS")
    ask.add_argument("--json", action="store_true", help="print the answer as JSON (text, eventIds, ...)")
    ask.set_defaults(func=_ask)

    state = commands.add_parser(
        "state",
        help="show or reset the stored bot states of a config",
        description="Read (show) or remove (reset) the bot states a config's hosts keep: the JetStream"
        " key-value bucket on NATS, the [state] dir elsewhere. Reset while the host is stopped (a"
        " running host writes over it; reload with reset_state = true instead). See docs/state.md.",
    )
    state_commands = state.add_subparsers(dest="state_command", metavar="COMMAND")

    def state_help(_args: argparse.Namespace) -> int:
        state.print_help()
        return 2

    state.set_defaults(func=state_help)
    for name, text in (("show", "print the stored states (with --bot: the state itself)"),
                       ("reset", "remove the stored states (with --bot: that bot's only)")):  # fmt: skip
        sub = state_commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        sub.add_argument("--config", required=True, type=_path, help="the config file (TOML)")
        sub.add_argument("--bot", default=None, help="one bot id")
        if name == "show":
            sub.add_argument("--json", action="store_true", help="print JSON (the states included)")
        sub.set_defaults(func=_state)

    asyncapi = commands.add_parser(
        "asyncapi",
        help="write the AsyncAPI 3.0 document of a config's topology",
        description="Write an AsyncAPI 3.0 document of --config: a channel per declared pattern, a"
        " send/receive operation per bot and pattern, message schemas from the payload types (installed"
        " plugins' too), NATS and in-memory servers. The dashboard serves the same at /asyncapi.json.",
    )
    asyncapi.add_argument("--config", required=True, type=_path, help="the config file (TOML)")
    asyncapi.add_argument("--out", type=_path, default=None, help="write to this file (default: stdout)")
    asyncapi.set_defaults(func=_asyncapi)
    return parser


def _ask(args: argparse.Namespace) -> int:
    """Ask ORA (see citarion_host/ask.py)."""
    from .ask import ask_command
    from .errors import ConfigError
    from .settings import load_config

    if not args.question.strip() or len(args.question) > 1_000:
        print("error: the question must be 1 to 1000 characters", file=sys.stderr)
        return 2
    if not 0 < args.timeout <= 300:
        print("error: --timeout must be in (0, 300] seconds", file=sys.stderr)
        return 2
    try:
        loaded = load_config(args.config)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    from pathlib import Path

    record = Path(args.record) if args.record else None
    return ask_command(loaded, args.question, record=record, timeout=args.timeout, as_json=args.json)


def _explain(args: argparse.Namespace) -> int:
    """Print the causes of EVENT_ID (see citarion_host/explain.py)."""
    from .errors import ConfigError
    from .explain import explain_command
    from .replay import parse_time

    try:
        settings = _replay_settings(args) if args.config else None
        since = parse_time(args.since) if args.since else None
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return explain_command(args.event_id, record=args.record, settings=settings, since=since)


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=_path, default=argparse.SUPPRESS, help="the config file (TOML) to run"
    )
    reload = parser.add_mutually_exclusive_group()
    reload.add_argument(
        "--reload",
        dest="reload",
        action="store_true",
        default=None,
        help="watch the config and apply changes",
    )
    reload.add_argument("--no-reload", dest="reload", action="store_false", help="ignore [host] reload")
    parser.add_argument(
        "--summary-json", type=_path, default=None, help="also write the run summary to this JSON file"
    )
    parser.add_argument(
        "--only",
        type=_ids,
        default=None,
        help="run only these bots (comma-separated ids); the rest of the topology runs on other hosts",
    )
    parser.add_argument(
        "--except",
        dest="excluded",
        type=_ids,
        default=None,
        help="run every bot but these (comma-separated ids)",
    )
    parser.add_argument(
        "--ui",
        action="store_true",
        default=False,
        help="serve the dashboard ([ui] enabled; address and port from [ui] host/port, docs/ui.md)",
    )
    parser.add_argument(
        "--speed",
        type=_positive_float,
        default=None,
        help="replay the feeds at this multiple of their data's pace (e.g. 600: a 1m bar every 0.1 s);"
        " turns reload off",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level or "WARNING", args.log_format or "text")
    func: Command | None = getattr(args, "func", None)
    if func is None:
        if not getattr(args, "config", None):
            parser.print_help()
            return 2
        func = _run  # `citarion-host --config F` runs
    if func is _run and not hasattr(args, "config"):
        args.config = None
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug, or input no check foresaw: one line, the traceback in the log
        log.debug("unexpected error", exc_info=True)
        _error(f"unexpected {type(exc).__name__}: {exc} (run with --log-level DEBUG for the traceback)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
