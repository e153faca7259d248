"""Where bot snapshots live: the host process, a directory of files, a JetStream key-value bucket.

:class:`StateKeeper` is what the host uses: it holds the latest snapshot of every bot in the process
(so a reload or a crash restart restores from memory at no cost, on every backend) and writes each one
through to a persistent :class:`StateStore` in the background, the newest per bot only (a slow store
coalesces, it never queues snapshot after snapshot).

Writes are atomic: a file is written to a temporary file, fsync'd and renamed over the old one (then the
directory is fsync'd), so a crash mid-write leaves the previous snapshot; a key-value put is atomic per
key on the server. A host that dies loses at most the snapshots not yet written, and resumes from the
previous ones (``docs/state.md``: the resume rule makes that exact).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Protocol

from .errors import StateError
from .state import Snapshot, read_snapshot

__all__ = ["DirStore", "StateKeeper", "StateStore", "write_atomically"]

log = logging.getLogger("citarion_host.state")

_SUFFIX = ".json"
_TEMP = ".tmp"
_LOCK = ".lock"


class StateStore(Protocol):
    """A persistent place for snapshots, one entry per bot id."""

    #: Where, for logs and ``state show`` (``dir /var/lib/x``, ``kv citarion-state``).
    where: str

    async def load(self, bot_id: str) -> bytes | None:
        """The stored bytes of ``bot_id``'s snapshot, None if there is none."""
        ...

    async def save(self, bot_id: str, data: bytes) -> None:
        """Replace ``bot_id``'s snapshot, atomically."""
        ...

    async def delete(self, bot_id: str) -> bool:
        """Remove ``bot_id``'s snapshot; False if there was none."""
        ...

    async def keys(self) -> list[str]:
        """The bot ids that have a snapshot, sorted."""
        ...

    def release(self, bot_id: str | None = None) -> None:
        """This process writes ``bot_id``'s snapshots no more (every bot's when None): give up what
        it held to write them (:class:`DirStore`'s lock)."""
        ...


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash at any point leaves the old or the new content.

    Temporary file in the same directory (``os.replace`` is atomic only within a file system), written
    and fsync'd before the rename, the directory fsync'd after it (so the rename itself is durable).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}{_TEMP}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class DirStore:
    """One ``<bot id>.json`` file per bot in a directory (created when missing).

    File work runs in a thread: an fsync takes milliseconds, which the event loop must not wait for.

    One writer per bot: the first write of a bot takes an exclusive ``flock`` on ``.<bot id>.lock``
    (holding the writer's pid), kept until :meth:`release` or the process ends (the kernel drops it
    on a crash, ``kill -9`` included). Two hosts started on one directory with the same bots (a
    service and a manual start, say) each overwrote the other's snapshots without a word, and a
    restart resumed whichever wrote last; now the second one's writes are refused, naming the pid
    that writes the bot. Hosts that share a directory for different bots (a split run, replicas of
    which one is active) do not conflict.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.where = f"dir {self.directory}"
        self._locks: dict[str, int] = {}  # bot id -> descriptor of its lock file, while it is ours

    def _path(self, bot_id: str) -> Path:
        return self.directory / f"{bot_id}{_SUFFIX}"

    def check(self) -> None:
        """Make the directory and write a file in it, or raise :class:`StateError`: a host whose
        ``[state] dir`` cannot be written ran to its end keeping nothing, one error line per bot."""
        probe = self.directory / f".probe.{os.getpid()}{_TEMP}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(probe) else ""
            raise StateError(
                f"[state] dir: cannot write {str(self.directory)!r}: {exc.strerror or exc}{where}"
            ) from None

    async def load(self, bot_id: str) -> bytes | None:
        return await asyncio.to_thread(self._load, bot_id)

    def _load(self, bot_id: str) -> bytes | None:
        try:
            return self._path(bot_id).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(
                f"bot {bot_id!r}: cannot read {self._path(bot_id)}: {exc.strerror or exc}"
            ) from exc

    async def save(self, bot_id: str, data: bytes) -> None:
        await asyncio.to_thread(self._save, bot_id, data)

    def _save(self, bot_id: str, data: bytes) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if bot_id not in self._locks:
                self._lock(bot_id)
            write_atomically(self._path(bot_id), data)
        except OSError as exc:
            raise StateError(
                f"bot {bot_id!r}: cannot write {self._path(bot_id)}: {exc.strerror or exc}"
            ) from exc

    def _lock(self, bot_id: str) -> None:
        """Become the one writer of ``bot_id``'s file, or raise :class:`StateError` naming the other."""
        descriptor = os.open(self.directory / f".{bot_id}{_LOCK}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise StateError(
                f"bot {bot_id!r}: {self._path(bot_id)} is written by another process (pid {holder}):"
                " two hosts run this bot on one [state] dir; this one does not write its state"
            ) from None
        except BaseException:
            os.close(descriptor)
            raise
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        self._locks[bot_id] = descriptor

    def release(self, bot_id: str | None = None) -> None:
        for each in [bot_id] if bot_id is not None else list(self._locks):
            descriptor = self._locks.pop(each, None)
            if descriptor is not None:
                os.close(descriptor)  # closing the last descriptor drops the flock

    async def delete(self, bot_id: str) -> bool:
        try:
            await asyncio.to_thread(self._path(bot_id).unlink)
        except FileNotFoundError:
            return False
        return True

    async def keys(self) -> list[str]:
        """Snapshot files only: temporary files a crash left behind (``.<id>.json.<pid>.tmp``) are not."""
        if not self.directory.is_dir():
            return []
        names = await asyncio.to_thread(os.listdir, self.directory)
        return sorted(n[: -len(_SUFFIX)] for n in names if n.endswith(_SUFFIX) and not n.startswith("."))


class StateKeeper:
    """The latest snapshot of every bot, in the process and written through to a store.

    One per host, kept across a backend switch (the store is replaced, the snapshots stay), so bots
    restarted on the new bus restore what they had.
    """

    def __init__(self, store: StateStore | None = None) -> None:
        self.store = store
        self.latest: dict[str, Snapshot] = {}
        self.written = 0
        self.write_failures = 0
        #: Bots whose last write failed, with the error: logged when it starts (or changes) and when
        #: a write works again, not at every snapshot (one a second, per bot, while a store is down).
        self._failing: dict[str, str] = {}
        self._pending: dict[str, bytes] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None

    @property
    def where(self) -> str:
        return self.store.where if self.store is not None else "process"

    def put(self, snapshot: Snapshot, data: bytes) -> None:
        """Keep ``snapshot`` as ``snapshot.bot``'s latest; write it in the background (never blocks)."""
        self.latest[snapshot.bot] = snapshot
        if self.store is None:
            return
        self._pending[snapshot.bot] = data  # a newer one replaces a snapshot not yet written
        self._idle.clear()
        self._wake.set()
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name="state-writer")

    async def load(self, bot_id: str) -> tuple[Snapshot | None, str]:
        """``bot_id``'s latest snapshot: the process's, else the store's; and where it came from."""
        snapshot = self.latest.get(bot_id)
        if snapshot is not None:
            return snapshot, "process"
        if self.store is None:
            return None, "process"
        data = await self.store.load(bot_id)
        if data is None:
            return None, self.store.where
        snapshot = read_snapshot(data, f"bot {bot_id!r}: the snapshot in {self.store.where}")
        self.latest[bot_id] = snapshot
        return snapshot, self.store.where

    async def forget(self, bot_id: str) -> None:
        """Drop ``bot_id``'s snapshot here and in the store (a reset)."""
        self.latest.pop(bot_id, None)
        self._pending.pop(bot_id, None)
        if self.store is not None:
            await self.store.delete(bot_id)

    def drop_local(self, bot_id: str) -> None:
        """Forget ``bot_id``'s snapshot in the process only, and write none still pending: another
        process holds the bot now (a replica's takeover reads the store; a fenced one writes nothing)."""
        self.latest.pop(bot_id, None)
        self._pending.pop(bot_id, None)
        if self.store is not None:
            self.store.release(bot_id)

    async def flush(self) -> None:
        """Return once every snapshot put so far is written (or failed, logged)."""
        if self._writer is not None:
            await self._idle.wait()

    async def replace_store(self, store: StateStore | None) -> None:
        """Write what is pending to the current store, then use ``store`` (a backend switch)."""
        await self.close()
        self.store = store

    async def close(self) -> None:
        """Flush, then stop the writer and give up what the store held for writing."""
        await self.flush()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if self.store is not None:
            self.store.release()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                bot_id = next(iter(self._pending))
                data = self._pending.pop(bot_id)
                await self._write(bot_id, data)
            if not self._pending:
                self._idle.set()

    async def _write(self, bot_id: str, data: bytes) -> None:
        store = self.store
        if store is None:
            return
        try:
            await store.save(bot_id, data)
            self.written += 1
        except Exception as exc:  # the next snapshot tries again; the process keeps the latest meanwhile
            self.write_failures += 1
            error = str(exc) or repr(exc)
            if self._failing.get(bot_id) != error:  # each failure counted; said when it starts or changes
                self._failing[bot_id] = error
                log.error(
                    "could not store a state snapshot",
                    extra={"bot": bot_id, "store": store.where, "error": error},
                )
        else:
            if self._failing.pop(bot_id, None) is not None:
                log.warning("state snapshot stored again", extra={"bot": bot_id, "store": store.where})

    def stats(self) -> dict[str, object]:
        return {
            "store": self.where,
            "bots": len(self.latest),
            "written": self.written,
            "write_failures": self.write_failures,
            "pending": len(self._pending),
        }
