"""``citarion-host state show|reset``: the stored bot states of a config, read or removed.

Reads the store the config's ``[state]`` names (``store_kind``): the JetStream key-value bucket (with the
config's ``[backend.nats]`` servers and credentials; a missing bucket is reported, never created), or
the ``[state] dir``. A state kept only in a host process has nothing to show from outside it.

Reset a bot's state while its host is stopped: a running host writes its next snapshot over the reset
(to reset a running bot, reload it with ``reset_state = true``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec

from .errors import StateError
from .hoststate import store_kind
from .settings import HostConfig
from .state import read_snapshot
from .statestore import DirStore, StateStore

__all__ = ["format_rows", "reset_states", "show_states", "state_store"]


@contextlib.asynccontextmanager
async def state_store(config: HostConfig) -> AsyncIterator[StateStore | None]:
    """The config's state store, opened for reading and removing (None: no persistent store)."""
    kind = store_kind(config)
    if kind == "dir":
        assert config.state.dir is not None
        yield DirStore(config.state.dir)
        return
    if kind != "kv":
        yield None
        return
    from nats.aio.client import Client

    from .bus.nats.connection import connect
    from .statekv import open_kv_store

    nc = Client()
    await connect(nc, config.backend.nats)
    try:
        yield await open_kv_store(nc, config.backend.nats, config.state.bucket, create=False)
    finally:
        await nc.close()


def _no_store(config: HostConfig) -> str:
    if store_kind(config) == "kv":
        return f"no key-value bucket {config.state.bucket!r} on the servers: no state stored"
    return "this config keeps bot state in the host process only ([state] store, dir): nothing stored"


async def show_states(config: HostConfig, bot: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """One row per stored state (or ``bot``'s), and where they were read. Listing them all, a state
    that cannot be read is a row with its ``error`` (the others are still shown: one cut-short file
    hid every other state); asked for by name, it raises."""
    async with state_store(config) as store:
        if store is None:
            raise StateError(_no_store(config))
        bots = [bot] if bot else await store.keys()
        rows: list[dict[str, Any]] = []
        for bot_id in bots:
            try:
                data = await store.load(bot_id)
                if data is None:
                    raise StateError(f"no stored state for bot {bot_id!r} in {store.where}")
                snapshot = read_snapshot(data, f"bot {bot_id!r}: the snapshot in {store.where}")
                state = msgspec.json.decode(snapshot.state)
            except (StateError, msgspec.DecodeError) as exc:
                if bot:
                    raise
                rows.append({"bot": bot_id, "error": str(exc)})
                continue
            rows.append(
                {
                    "bot": bot_id,
                    "type": snapshot.type,
                    "version": snapshot.version,
                    "handled": snapshot.handled,
                    "seq": snapshot.seq,
                    "stream": snapshot.stream,
                    "event_id": snapshot.event_id,
                    "time": datetime.fromtimestamp(snapshot.time_ms / 1000, UTC).isoformat(
                        timespec="milliseconds"
                    ),
                    "bytes": len(data),
                    "state": state,
                }
            )
        return rows, store.where


async def reset_states(config: HostConfig, bot: str | None = None) -> tuple[list[str], str]:
    """Remove ``bot``'s stored state (every stored state without ``bot``); the ids removed, and where."""
    async with state_store(config) as store:
        if store is None:
            raise StateError(_no_store(config))
        bots = [bot] if bot else await store.keys()
        removed = [bot_id for bot_id in bots if await store.delete(bot_id)]
        if bot and not removed:
            raise StateError(f"no stored state for bot {bot!r} in {store.where}")
        return removed, store.where


def format_rows(rows: list[dict[str, Any]], where: str, *, with_state: bool) -> str:
    """Text for ``state show``: one line per bot; the state itself as JSON with ``with_state``."""
    lines = [f"{len(rows)} stored state(s) in {where}"]
    for row in rows:
        if "error" in row:
            lines.append(
                f"{row['bot']}: UNREADABLE: {row['error']} (state reset --bot {row['bot']} drops it)"
            )
            continue
        position = (
            f"seq {row['seq']} of {row['stream']}" if row["seq"] is not None else f"event {row['event_id']}"
        )
        lines.append(
            f"{row['bot']}: {row['type']} v{row['version']}, {row['handled']:,} events, after {position},"
            f" {row['bytes']:,} bytes, {row['time']}"
        )
        if with_state:
            lines.append(json.dumps(row["state"], indent=2, sort_keys=True))
    return "\n".join(lines)
