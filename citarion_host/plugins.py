"""Finding plugins and the bot types they provide.

Plugins come from the entry-point group ``citarion.bots`` (installed packages) and from
``module:object`` paths named in the config (local development). Lessons from other plugin hosts
applied here:

* Entry points are loaded one by one, not with pluggy's ``load_setuptools_entrypoints``, which stops
  at the first broken plugin and can leave it half-registered. A broken plugin is reported with its
  real import error and the others still load.
* An entry point seen twice (editable installs, symlinked site-packages) is loaded once.
* ``module:object`` code is imported fresh when asked to (``reimport=True``): removing the module from
  ``sys.modules`` and importing it again gives new class objects, so restarted bots run the new code.
  ``importlib.reload`` is not used: it leaves old classes alive and breaks ``isinstance``.
* Imports run under a timeout (``import_timeout_s``, ``[host] plugin_import_timeout_s``): a module
  that never finishes importing (a network call, a lock, an endless loop at module level) would
  otherwise freeze the host, or a reload, for good. See :class:`_Importer`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import importlib.metadata
import importlib.util
import inspect
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FunctionType, MethodType, ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .bot import Bot
from .errors import CitarionError
from .events import EventCatalog
from .payloads import Payload
from .registry import BotRegistry

__all__ = ["ENTRY_POINT_GROUP", "PluginError", "PluginInfo", "Plugins", "get_plugin_manager"]

ENTRY_POINT_GROUP = "citarion.bots"
#: Default of ``[host] plugin_import_timeout_s``.
IMPORT_TIMEOUT_S = 10.0
log = logging.getLogger("citarion_host.plugins")


class PluginError(CitarionError):
    """A plugin could not be found or loaded; the message carries the real cause."""


@dataclass(frozen=True)
class PluginInfo:
    """One plugin as ``citarion-host bots`` reports it."""

    name: str
    source: str  # "entry point citarion.bots (dist 1.0)" or "path module:object"
    bot_types: tuple[str, ...]
    error: str | None = None
    file: str | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager with citarion's hook specs (no global one: each host has its own)."""
    manager = _Manager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


#: What pluggy can take as a hook implementation (``pluggy._manager._static_hook_attr``).
_HOOKABLE = (FunctionType, MethodType, staticmethod, classmethod)
#: Names a module's type resolves itself (``inspect.getattr_static`` may not read them from the module).
_MODULE_TYPE_NAMES = frozenset(dir(ModuleType))


class _Manager(pluggy.PluginManager):
    """pluggy's manager, reading a module's hook implementations without pluggy's per-name look-up.

    Registering a module makes pluggy look at every name of ``dir(module)`` with
    ``inspect.getattr_static`` (so that no descriptor runs): about forty names per bot module, most of
    them imported classes and modules, and that look-up was most of the cost of finding the plugins
    (done by every host, so once per run). For a module, ``getattr_static`` of a name its type does not
    define is the entry of the module's ``__dict__``, so that is read instead: a value that is not a
    function (or a method, a ``staticmethod``, a ``classmethod``) is no hook implementation for pluggy
    either, and a function's options are its marker attribute, as pluggy reads them. Everything else
    (methods, plugins that are not modules) goes through pluggy's own parsing."""

    def parse_hookimpl_opts(self, plugin: object, name: str) -> Any:
        if type(plugin) is ModuleType and name not in _MODULE_TYPE_NAMES:
            value = plugin.__dict__.get(name)
            if type(value) is FunctionType:
                opts = getattr(value, f"{self.project_name}_impl", None)
                return opts if isinstance(opts, dict) else None
            if not isinstance(value, _HOOKABLE):
                return None
        return super().parse_hookimpl_opts(plugin, name)


@dataclass
class _Import:
    """One import running in its worker thread."""

    started: float
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


class _Importer:
    """Runs imports in daemon threads; callers wait at most the timeout.

    Why a thread: an import cannot be interrupted, so the only way not to hang with it is not to
    wait for it. A timed-out import is left running (a daemon thread does not keep the process
    alive); asking again for the same module while it runs waits for *that* import (what is left of
    its timeout) instead of starting a second one, which would block on the module's import lock.
    """

    def __init__(self) -> None:
        self._running: dict[str, _Import] = {}

    def _job(self, key: str, load: Callable[[], Any]) -> _Import:
        job = self._running.get(key)
        if job is not None and not job.future.done():
            return job  # still running from an earlier attempt
        job = self._running[key] = _Import(time.monotonic())

        def work() -> None:
            try:
                job.future.set_result(load())
            except BaseException as exc:  # SystemExit at import too: it must not end the host
                job.future.set_exception(exc)

        threading.Thread(target=work, name=f"citarion-import {key}", daemon=True).start()
        return job

    def run(self, key: str, load: Callable[[], Any], timeout: float) -> Any:
        """``load()`` (an import) in a worker thread; raises ``TimeoutError`` after ``timeout``."""
        job = self._job(key, load)
        try:
            result = job.future.result(timeout=max(job.started + timeout - time.monotonic(), 0))
        except concurrent.futures.TimeoutError:
            raise TimeoutError(_hung(key, timeout)) from None
        self._running.pop(key, None)
        return result

    async def run_async(self, key: str, load: Callable[[], Any], timeout: float) -> Any:
        """The same, waiting without blocking the event loop."""
        job = self._job(key, load)
        remaining = max(job.started + timeout - time.monotonic(), 0)
        try:
            result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job.future)), remaining)
        except TimeoutError:
            raise TimeoutError(_hung(key, timeout)) from None
        self._running.pop(key, None)
        return result


def _imported(name: str) -> bool:
    """Module ``name`` is imported, and not still being imported (by a thread whose import hung)."""
    module = sys.modules.get(name)
    return module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False)


def _hung(key: str, timeout: float) -> str:
    return f"import of {key!r} did not finish within {timeout:g}s (plugin_import_timeout_s)"


class Plugins:
    """The host's plugins and the bot types they provide, by ``type_name``."""

    def __init__(
        self, manager: pluggy.PluginManager | None = None, *, import_timeout_s: float = IMPORT_TIMEOUT_S
    ) -> None:
        self.manager = manager or get_plugin_manager()
        #: How long an import may take before the plugin is reported broken (``[host]
        #: plugin_import_timeout_s``); the host sets it from its config.
        self.import_timeout_s = import_timeout_s
        self._infos: dict[str, PluginInfo] = {}
        self._paths: dict[str, type[Bot]] = {}
        self._importer = _Importer()

    @classmethod
    def discover(
        cls, group: str = ENTRY_POINT_GROUP, *, import_timeout_s: float = IMPORT_TIMEOUT_S
    ) -> Plugins:
        """Plugins from every installed entry point of ``group``; broken ones are reported, not fatal."""
        plugins = cls(import_timeout_s=import_timeout_s)
        plugins.load_entry_points(group)
        return plugins

    # -- loading --------------------------------------------------------------------------------

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        seen: set[tuple[str, str]] = set()
        # Each distribution's metadata parsed once (a distribution has many entry points, and its name
        # and version are each a parse of its METADATA file).
        sources: dict[int, str] = {}
        for entry_point in importlib.metadata.entry_points(group=group):
            key = (entry_point.name, entry_point.value)
            if key in seen or entry_point.name in self._infos:
                continue  # the same plugin found twice (editable install, symlinked site-packages)
            seen.add(key)
            dist = entry_point.dist
            source = sources.get(id(dist))
            if source is None:
                meta = dist.metadata if dist else None
                source = sources[id(dist)] = f"entry point {group}" + (
                    f" ({meta['Name']} {meta['Version']})" if meta else ""
                )
            try:
                if _imported(entry_point.module):  # nothing left that could hang: no thread
                    plugin = entry_point.load()
                else:
                    plugin = self._importer.run(entry_point.module, entry_point.load, self.import_timeout_s)
                self._register(plugin, entry_point.name, source)
            except BaseException as exc:  # an import's SystemExit included: the others still load
                error = f"{type(exc).__name__}: {exc}"
                log.error("plugin failed to load", extra={"plugin": entry_point.name, "error": error})
                self._infos[entry_point.name] = PluginInfo(entry_point.name, source, (), error)

    def register(self, plugin: object, name: str | None = None, source: str = "registered") -> None:
        """Register a plugin object (a module or an object with ``@hookimpl`` functions)."""
        self._register(plugin, name or str(getattr(plugin, "__name__", repr(plugin))), source)

    def _register(self, plugin: object, name: str, source: str) -> None:
        """Register and validate ``plugin`` (as pluggy validates hook signatures, this validates what
        its hooks return): a plugin providing something that is not a bot type, or an invalid payload
        type, is refused with its name and unregistered, so it cannot break the others later."""
        if inspect.isclass(plugin) and issubclass(plugin, Bot):
            plugin = _SingleBotPlugin(plugin)  # an entry point may name a Bot class directly
        if not self.manager.is_registered(plugin):
            try:
                self.manager.register(plugin, name=name)
            except ValueError as exc:  # pluggy: name already registered
                raise PluginError(f"plugin {name!r}: {exc}") from None
        try:
            types = tuple(sorted(t.type_name for t in _validated_bot_types(self.manager, plugin, name)))
            _validate_payload_types(self.manager, plugin, name)
        except BaseException:
            self.manager.unregister(plugin)
            raise
        file = getattr(plugin, "__file__", None) or getattr(inspect.getmodule(plugin), "__file__", None)
        self._infos[name] = PluginInfo(name, source, types, None, file)

    def load_path(self, spec: str, *, reimport: bool = False) -> type[Bot]:
        """Resolve ``module:object`` to a Bot class (importing the module fresh if ``reimport``)."""
        module_name, _, attribute = spec.partition(":")
        if not module_name or not attribute:
            raise PluginError(f"plugin {spec!r}: expected 'module:object'")
        if not reimport and spec in self._paths:
            return self._paths[spec]
        if reimport:
            _forget_module(module_name)
        try:
            module = self._importer.run(module_name, _importer_of(module_name), self.import_timeout_s)
        except BaseException as exc:  # SystemExit or KeyboardInterrupt raised by a module's code too
            raise PluginError(
                f"plugin {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        target: Any = module
        for part in attribute.split("."):
            if not hasattr(target, part):
                raise PluginError(f"plugin {spec!r}: module {module_name!r} has no attribute {attribute!r}")
            target = getattr(target, part)
        if not (inspect.isclass(target) and issubclass(target, Bot)):
            raise PluginError(f"plugin {spec!r}: {attribute!r} is not a subclass of citarion_host.Bot")
        _check_lifecycle(target, f"plugin {spec!r}")
        self._register_module_hooks(module, spec)
        self._paths[spec] = target
        return target

    async def preload(self, specs: Iterable[str]) -> None:
        """Import the modules of ``module:object`` specs without blocking the event loop, so that
        the synchronous check that follows finds them imported (or their import still running, and
        fails at once instead of blocking the loop for the whole timeout). Failures are left for
        that check to report."""
        for module_name in dict.fromkeys(s.partition(":")[0] for s in specs if ":" in s):
            if module_name and module_name not in sys.modules:
                load = _importer_of(module_name)
                try:
                    await self._importer.run_async(module_name, load, self.import_timeout_s)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:  # whatever the module raised: the check reports it
                    log.debug("plugin preload failed", extra={"module": module_name, "error": repr(exc)})

    def _register_module_hooks(self, module: ModuleType, spec: str) -> None:
        """A module named by path may also carry hooks (payload types, rules): register them."""
        has_hooks = any(
            getattr(getattr(module, name, None), f"{hookspecs.PROJECT}_impl", None) for name in dir(module)
        )
        name = f"path:{module.__name__}"
        old = self.manager.get_plugin(name)
        if old is not None and old is not module:
            self.manager.unregister(old)
        if has_hooks and not self.manager.is_registered(module):
            self.manager.register(module, name=name)
            try:
                _validated_bot_types(self.manager, module, name)
                _validate_payload_types(self.manager, module, name)
            except BaseException:
                self.manager.unregister(module)
                raise
        self._infos[name] = PluginInfo(name, f"path {spec}", (), None, getattr(module, "__file__", None))

    # -- queries --------------------------------------------------------------------------------

    def bot_types(self) -> dict[str, type[Bot]]:
        """Every bot type provided by registered plugins, by ``type_name``."""
        found: dict[str, type[Bot]] = {}
        for batch in self.manager.hook.citarion_bot_types():
            for bot_type in batch:
                if not (inspect.isclass(bot_type) and issubclass(bot_type, Bot) and bot_type.type_name):
                    raise PluginError(f"{bot_type!r}: a bot type must subclass Bot and set type_name")
                found.setdefault(bot_type.type_name, bot_type)
        return found

    def resolve(self, plugin: str, *, reimport: bool = False) -> type[Bot]:
        """The Bot class a config's ``plugin`` names: ``module:object``, a ``type_name``, or an
        entry-point name whose plugin provides exactly one bot type."""
        if ":" in plugin:
            return self.load_path(plugin, reimport=reimport)
        types = self.bot_types()
        if plugin in types:
            return types[plugin]
        info = self._infos.get(plugin)
        if info is not None and info.error:
            raise PluginError(f"plugin {plugin!r} is installed but failed to load: {info.error}")
        if info is not None and len(info.bot_types) == 1:
            return types[info.bot_types[0]]
        known = ", ".join(sorted(types)) or "none installed"
        raise PluginError(f"unknown plugin {plugin!r} (known bot types: {known}; or use 'module:object')")

    def infos(self) -> list[PluginInfo]:
        return sorted(self._infos.values(), key=lambda info: info.name)

    def failures(self) -> list[PluginInfo]:
        return [info for info in self.infos() if info.error]

    def source_files(self) -> list[Path]:
        """Files of path-loaded plugins (what a development reloader watches)."""
        return [Path(info.file) for info in self.infos() if info.file and info.source.startswith("path ")]

    def path_specs_from(self, file: Path) -> list[str]:
        """The ``module:object`` specs whose module lives in ``file``."""
        resolved = file.resolve()
        return [
            spec
            for spec, bot_type in self._paths.items()
            if (source := inspect.getsourcefile(bot_type)) and Path(source).resolve() == resolved
        ]

    # -- applying what plugins contribute -------------------------------------------------------

    def extend_catalog(self, catalog: EventCatalog) -> None:
        """Add the plugins' domains and payload types to ``catalog`` (a host's own; the shared
        built-in catalog is read-only)."""
        for domains in self.manager.hook.citarion_domains():
            for domain in domains:
                if domain not in catalog.domains:
                    catalog.add_domain(domain)
        for mapping in self.manager.hook.citarion_payload_types():
            for pattern, payload_type in mapping.items():
                catalog.register_payload(pattern, payload_type)

    def extend_registry(self, registry: BotRegistry) -> None:
        self.manager.hook.citarion_registry(registry=registry)


class _SingleBotPlugin:
    """Adapter: an entry point that names one Bot class is a plugin providing that type."""

    def __init__(self, bot_type: type[Bot]) -> None:
        self.bot_type = bot_type
        self.__name__ = f"{bot_type.__module__}.{bot_type.__qualname__}"

    @hookspecs.hookimpl
    def citarion_bot_types(self) -> list[type[Bot]]:
        return [self.bot_type]


def _own_results(manager: pluggy.PluginManager, plugin: object, hook: str) -> list[Any]:
    """What ``plugin`` alone returns from ``hook``."""
    others = [p for p in manager.get_plugins() if p is not plugin]
    return list(manager.subset_hook_caller(hook, remove_plugins=others)())


def _validated_bot_types(manager: pluggy.PluginManager, plugin: object, name: str) -> list[type[Bot]]:
    found: list[type[Bot]] = []
    for batch in _own_results(manager, plugin, "citarion_bot_types"):
        if isinstance(batch, str | bytes) or not isinstance(batch, Iterable):
            raise PluginError(f"plugin {name!r}: citarion_bot_types must return a list of Bot classes")
        for bot_type in batch:
            if not (inspect.isclass(bot_type) and issubclass(bot_type, Bot)):
                raise PluginError(
                    f"plugin {name!r}: citarion_bot_types returned {bot_type!r}, not a subclass of "
                    "citarion_host.Bot"
                )
            if not bot_type.type_name:
                raise PluginError(f"plugin {name!r}: bot type {bot_type.__qualname__} sets no type_name")
            _check_lifecycle(bot_type, f"plugin {name!r}: bot type {bot_type.type_name!r}")
            found.append(bot_type)
    return found


def _check_lifecycle(bot_type: type[Bot], what: str) -> None:
    """A bot's ``handle``, ``start`` and ``stop`` are awaited by the host: each must be ``async def``.

    Why here: a plain ``def handle`` ran (its side effects happened), then failed on every event with
    "object NoneType can't be used in 'await' expression", the bot restarted and failed for good, and
    ``check`` had said nothing. Said at load instead, so ``check`` and a reload refuse it by name."""
    for method in ("handle", "start", "stop"):
        function = getattr(bot_type, method, None)
        if function is not None and not inspect.iscoroutinefunction(function):
            raise PluginError(
                f"{what}: {bot_type.__module__}.{bot_type.__qualname__}.{method} must be 'async def'"
                " (the host awaits it), not a plain function"
            )


def _validate_payload_types(manager: pluggy.PluginManager, plugin: object, name: str) -> None:
    for mapping in _own_results(manager, plugin, "citarion_payload_types"):
        if not isinstance(mapping, dict):
            raise PluginError(f"plugin {name!r}: citarion_payload_types must return {{pattern: type}}")
        for pattern, payload_type in mapping.items():
            if not (inspect.isclass(payload_type) and issubclass(payload_type, Payload)):
                raise PluginError(
                    f"plugin {name!r}: payload type for {pattern!r} is {payload_type!r}, not a "
                    "subclass of citarion_host.payloads.Payload"
                )


def _importer_of(module_name: str) -> Callable[[], ModuleType]:
    return lambda: importlib.import_module(module_name)


def _forget_module(name: str) -> None:
    """Drop ``name`` (and its submodules) from ``sys.modules`` so the next import reads the source."""
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        source = getattr(sys.modules[loaded], "__file__", None)
        del sys.modules[loaded]
        if source and source.endswith(".py"):
            # A source edited within the same second and to the same size would pass the .pyc
            # freshness check (mtime in seconds + size): drop the cached bytecode.
            Path(importlib.util.cache_from_source(source)).unlink(missing_ok=True)
    importlib.invalidate_caches()
