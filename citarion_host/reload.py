"""Hot reload: watch the config files (and local plugin sources), apply what changed, or keep the old.

Done the way Benthos does it, and with the pitfalls of other reloaders in mind:

* Watch the **parent directories**, not the files: editors save by atomic rename and Kubernetes swaps
  ConfigMap symlinks, both of which replace the file a file-watch was attached to.
* **Wait until the files are stable** (unchanged for ``[host] reload_debounce_s``) and compare
  **content hashes**, so a file still being written is not read half way, and touching a file or
  saving it unchanged does nothing.
* **Parse and check before touching anything**: an invalid config is logged with every precise error
  and the running topology stays as it was (:meth:`Host.apply` raises before changing anything).
  Plugin modules are imported first, off the event loop and under ``plugin_import_timeout_s``, so a
  module that hangs at import is a rejected config, not a frozen host.
* **Refuse what looks like a write cut short**, even when it parses: a config file that became empty
  (``cat > file`` leaves it so for a moment), or a new config that would stop more than
  ``[host] reload_max_removed_share`` of the running bots (a write cut between two ``[[bots]]``
  entries). A config that really means it says so by raising that share.
* **The watcher cannot die**: every exception of a watch-parse-check-apply round is logged and the
  next change is handled; if the watch itself fails (a directory removed), it is set up again.
* Plugin code changes restart only the bots built from the changed module, from a fresh import.

:meth:`ConfigReloader.reload_once` is the whole reload step without the watcher, so tests drive
reloads deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from .errors import CitarionError, ConfigError
from .host import Host
from .settings import LoadedConfig, load_config
from .topology import TopologyDiff, diff_topology

__all__ = ["ConfigReloader", "ReloadResult"]

log = logging.getLogger("citarion_host.reload")

#: Wait before watching again after the watch itself failed (a watched directory removed...).
_REWATCH_DELAY_S = 1.0
#: Bot ids named in a refused mass removal (the rest are counted).
_NAMED = 5


@dataclass
class ReloadResult:
    """What one reload did: applied a diff, rejected an invalid config, or found nothing new."""

    status: str  # "applied" | "rejected" | "unchanged"
    diff: TopologyDiff | None = None
    errors: list[str] = field(default_factory=list)
    restarted_for_code: list[str] = field(default_factory=list)


class ConfigReloader:
    """Keeps a running :class:`Host` in line with its config files."""

    def __init__(
        self, host: Host, *, debounce_ms: int | None = None, watch_plugins: bool | None = None
    ) -> None:
        self.host = host
        settings = host.config.host
        self.debounce_ms = round(settings.reload_debounce_s * 1000) if debounce_ms is None else debounce_ms
        self.watch_plugins = settings.watch_plugins if watch_plugins is None else watch_plugins
        self._hashes: dict[Path, str] = {p: _digest(p) for p in self._config_files()}
        self._code_hashes: dict[Path, str] = {p: _digest(p) for p in self._plugin_files()}
        self._empty_before = {p: _is_empty(p) for p in self._config_files()}
        self.applied = 0
        self.rejected = 0
        self.failed = 0  # rounds that raised something unexpected (logged; the watcher went on)

    def _config_files(self) -> list[Path]:
        return list(self.host.loaded.files)

    def _plugin_files(self) -> list[Path]:
        return list(self.host.plugins.source_files()) if self.watch_plugins else []

    def watched_directories(self) -> list[Path]:
        return sorted({p.parent for p in [*self._config_files(), *self._plugin_files()]})

    async def reload_once(self, *, force: bool = False) -> ReloadResult:
        """Reload if the config or plugin sources changed (by content, not timestamps), or ``force``."""
        changed_code = self._changed(self._code_hashes, self._plugin_files())
        config_changed = bool(self._changed(self._hashes, self._config_files())) or force
        result = ReloadResult("unchanged")
        if config_changed:
            result = await self._apply_config()
        if changed_code:
            try:
                restarted = await self.host.reload_plugin_code(changed_code)
            except CitarionError as exc:  # the new code does not import: the running bots stay
                return self._reject([str(exc)], what="plugin code rejected")
            log.info(
                "plugin code reloaded", extra={"files": [str(p) for p in changed_code], "bots": restarted}
            )
            result.restarted_for_code = restarted
            if result.status == "unchanged":
                result.status = "applied"
        return result

    async def _apply_config(self) -> ReloadResult:
        emptied = [p for p in self._config_files() if _is_empty(p) and not self._empty_before.get(p, False)]
        if emptied:
            return self._reject(
                [f"{p}: the file is empty (still being written?); not applied" for p in emptied]
            )
        try:
            loaded = load_config(self.host.loaded.path)
            self._refuse_mass_removal(loaded)
            self.host.plugins.import_timeout_s = loaded.config.host.plugin_import_timeout_s
            await self.host.plugins.preload(bot.plugin for bot in loaded.config.bots)
            diff = await self.host.apply(loaded)
        except ConfigError as exc:
            return self._reject([str(p) for p in exc.problems])
        except CitarionError as exc:  # e.g. a plugin that cannot load: same policy
            return self._reject([str(exc)])
        self._hashes = {p: _digest(p) for p in self._config_files()}  # includes may have changed
        self._empty_before = {p: _is_empty(p) for p in self._config_files()}
        self.applied += 1
        return ReloadResult("applied", diff=diff)

    def _refuse_mass_removal(self, loaded: LoadedConfig) -> None:
        """Raise ConfigError if ``loaded`` stops more than its ``reload_max_removed_share`` of the
        running bots: more likely a file cut short than an intended change."""
        running = [bot.id for bot in self.host.config.bots if bot.enabled]
        removed = diff_topology(self.host.config, loaded.config).removed
        limit = loaded.config.host.reload_max_removed_share
        if not running or len(removed) <= limit * len(running):
            return
        named = ", ".join(removed[:_NAMED]) + (
            f" and {len(removed) - _NAMED} more" if len(removed) > _NAMED else ""
        )
        raise ConfigError(
            f"{loaded.path}: would stop {len(removed)} of {len(running)} running bots ({named}), more than"
            f" [host] reload_max_removed_share = {limit:g} of them (a write cut short?); not applied."
            " To remove them on purpose, raise reload_max_removed_share in the new config"
        )

    def _reject(self, problems: list[str], *, what: str = "config rejected") -> ReloadResult:
        self.rejected += 1
        for problem in problems:
            log.error(f"{what}, keeping the running topology", extra={"problem": problem})
        return ReloadResult("rejected", errors=problems)

    def up_to_date(self) -> bool:
        """True when every watched config file holds what the last reload round read (applied or
        rejected): nothing is waiting to be reloaded."""
        return all(self._hashes.get(p) == _digest(p) for p in self._config_files())

    @staticmethod
    def _changed(hashes: dict[Path, str], files: list[Path]) -> list[Path]:
        changed = []
        for file in files:
            digest = _digest(file)
            if hashes.get(file) != digest:
                hashes[file] = digest
                changed.append(file)
        return changed

    # -- the watcher ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set; each batch of changes, once the files are stable, triggers
        :meth:`reload_once`. Nothing a round raises ends the watch."""
        while not stop.is_set():
            directories = self.watched_directories()
            log.info("watching for config changes", extra={"dirs": [str(d) for d in directories]})
            try:
                await self._watch(directories, stop)
            except Exception as exc:
                self.failed += 1
                log.error("config watcher failed; watching again", extra={"error": repr(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _REWATCH_DELAY_S)

    async def _watch(self, directories: list[Path], stop: asyncio.Event) -> None:
        """One watch of ``directories``; returns when they should change (an include moved) or on stop."""
        async for _changes in watchfiles.awatch(
            *directories, stop_event=stop, debounce=self.debounce_ms, recursive=False
        ):
            # Any change in a watched directory may be ours (a rename, a symlink swap): the content
            # hashes decide whether anything really changed.
            await self._settle(stop)
            await self._reload_guarded()
            if self.watched_directories() != directories:
                return

    async def _settle(self, stop: asyncio.Event) -> None:
        """Wait until the watched files keep the same content for the debounce window."""
        window = self.debounce_ms / 1000
        before = self._snapshot()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), window)
            now = self._snapshot()
            if now == before:
                return
            before = now

    def _snapshot(self) -> list[str]:
        return [_digest(p) for p in [*self._config_files(), *self._plugin_files()]]

    async def _reload_guarded(self) -> None:
        try:
            await self.reload_once()
        except Exception:  # a bug, or a plugin's hook raising: log it, keep watching
            self.failed += 1
            log.exception("reload failed; watching for the next change")


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except (OSError, ValueError):
        return "missing"


def _is_empty(path: Path) -> bool:
    """Blank (0 bytes or whitespace only); a missing file is not "empty" (it may be mid-rename)."""
    try:
        with path.open("rb") as stream:
            head = stream.read(4096)
    except (OSError, ValueError):
        return False
    return not head.strip()
