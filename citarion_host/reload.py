"""Hot reload: watch the config files (and local plugin sources), apply what changed, or keep the old.

Done the way Benthos does it, and with the pitfalls of other reloaders in mind:

* Watch the **parent directories**, not the files: editors save by atomic rename and Kubernetes swaps
  ConfigMap symlinks, both of which replace the file a file-watch was attached to.
* **Debounce** bursts (watchfiles groups changes) and compare **content hashes**, so touching a file
  or saving it unchanged does nothing.
* **Parse and check before touching anything**: an invalid config is logged with every precise error
  and the running topology stays as it was (:meth:`Host.apply` raises before changing anything).
* Plugin code changes restart only the bots built from the changed module, from a fresh import.

:meth:`ConfigReloader.reload_once` is the whole reload step without the watcher, so tests drive
reloads deterministically.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

from .errors import CitarionError, ConfigError
from .host import Host
from .settings import load_config
from .topology import TopologyDiff

__all__ = ["ConfigReloader", "ReloadResult"]

log = logging.getLogger("citarion_host.reload")


@dataclass
class ReloadResult:
    """What one reload did: applied a diff, rejected an invalid config, or found nothing new."""

    status: str  # "applied" | "rejected" | "unchanged"
    diff: TopologyDiff | None = None
    errors: list[str] = field(default_factory=list)
    restarted_for_code: list[str] = field(default_factory=list)


class ConfigReloader:
    """Keeps a running :class:`Host` in line with its config files."""

    def __init__(self, host: Host, *, debounce_ms: int = 200, watch_plugins: bool | None = None) -> None:
        self.host = host
        self.debounce_ms = debounce_ms
        self.watch_plugins = host.config.host.watch_plugins if watch_plugins is None else watch_plugins
        self._hashes: dict[Path, str] = {p: _digest(p) for p in self._config_files()}
        self._code_hashes: dict[Path, str] = {p: _digest(p) for p in self._plugin_files()}
        self.applied = 0
        self.rejected = 0

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
            restarted = await self.host.reload_plugin_code(changed_code)
            log.info(
                "plugin code reloaded", extra={"files": [str(p) for p in changed_code], "bots": restarted}
            )
            result.restarted_for_code = restarted
            if result.status == "unchanged":
                result.status = "applied"
        return result

    async def _apply_config(self) -> ReloadResult:
        path = self.host.loaded.path
        try:
            loaded = load_config(path)
            diff = await self.host.apply(loaded)
        except ConfigError as exc:
            self.rejected += 1
            for problem in exc.problems:
                log.error("config rejected, keeping the running topology", extra={"problem": str(problem)})
            return ReloadResult("rejected", errors=[str(p) for p in exc.problems])
        except CitarionError as exc:  # e.g. a plugin that cannot load: same policy
            self.rejected += 1
            log.error("config rejected, keeping the running topology", extra={"problem": str(exc)})
            return ReloadResult("rejected", errors=[str(exc)])
        self._hashes = {p: _digest(p) for p in self._config_files()}  # includes may have changed
        self.applied += 1
        return ReloadResult("applied", diff=diff)

    @staticmethod
    def _changed(hashes: dict[Path, str], files: list[Path]) -> list[Path]:
        changed = []
        for file in files:
            digest = _digest(file)
            if hashes.get(file) != digest:
                hashes[file] = digest
                changed.append(file)
        return changed

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set; each batch of relevant changes triggers :meth:`reload_once`."""
        log.info("watching for config changes", extra={"dirs": [str(d) for d in self.watched_directories()]})
        async for _changes in watchfiles.awatch(
            *self.watched_directories(), stop_event=stop, debounce=self.debounce_ms, recursive=False
        ):
            # Any change in a watched directory may be ours (a rename, a symlink swap): the content
            # hashes decide whether anything really changed.
            await self.reload_once()


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "missing"
