"""The model server a run talks to: find it, or start one and own it.

`ensure_server(settings)` resolves the server URL (`settings.host`: config, `--host` or
`OLLAMA_HOST`, default `http://127.0.0.1:11434`) and probes `GET /api/version`:

- Something answers: a `ServerHandle` that does **not** own it. A daemon this process did not start
  is never stopped or restarted.
- Nothing answers on a local address (loopback) and `settings.manage_server` is on: start one and
  own it. The real `ollama serve` when an executable is found (`settings.ollama_path`, else `ollama`
  on PATH), otherwise the embedded engine (`python -m ollagraph.agents.engine serve`). The child
  gets `OLLAMA_HOST=host:port`, its own process group, stdin from /dev/null, and stdout/stderr
  appended to `$OLLAGRAPH_HOME/logs/server.log` (never an unread pipe). It is polled with backoff
  (0.05 s doubling to 1 s) until `/api/version` answers; an early exit or a timeout ends in a
  `ModelError` that quotes the last lines of that log.
- A remote host is never managed: unreachable means a `ModelError` with the URL. It is not
  stopped, restarted (`with_recovery` only restarts servers this process owns) or pulled onto
  implicitly: `may_auto_pull` allows `auto_pull` only for a server on this machine.

An owned server is stopped (SIGTERM to its process group, SIGKILL after a grace period) by
`ServerHandle.stop()` and at interpreter exit, unless `settings.leave_server_running`. If it dies
mid-run, `with_recovery(fn)` (or `ServerHandle.recover()`) restarts it once with the same command
and log, and the request is retried; a second death is a clear `ModelError`.

`current_server()` returns the handle `ensure_server` made last in this process, so model-call code
can find it without passing it around. Importing this module starts nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from ollagraph.agents.config import Settings
from ollagraph.agents.errors import ModelError
from ollagraph.agents.paths import state_path
from ollagraph.agents.server_process import (
    describe_exit,
    kill_group,
    log_offset,
    log_tail,
    spawn,
    tail_hint,
    terminate_group,
)

T = TypeVar("T")

ServerKind = Literal["external", "ollama", "engine"]

ENGINE_MODULE = "ollagraph.agents.engine"
PROBE_TIMEOUT = 3.0
"""Seconds `ensure_server` waits for `/api/version` before deciding nothing answers."""
STOP_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when stopping an owned server."""
MAX_RESTARTS = 1
EXIT_GRACE = 1.0
"""Seconds a server that stopped answering mid-request gets to finish exiting (see `recover`)."""

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_lock = threading.RLock()
_current: ServerHandle | None = None


def probe(host: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Ask the server at `host` for its version.

    Args:
        host: Server URL with scheme and port (`http://127.0.0.1:11434`).
        timeout: Seconds to wait for a connection and an answer.

    Returns:
        The version string (`"0.12.0"`), or None when nothing answers: the connection is refused,
        the name does not resolve, or the wait times out.

    Raises:
        ModelError: Something answers at `host` but it is not an Ollama server (wrong status, not
            JSON, no `version` field, or not HTTP at all).
    """
    import httpx

    url = host.rstrip("/") + "/api/version"
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
    except (httpx.ConnectError, httpx.TimeoutException):
        return None
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise _not_ollama(host, f"it does not speak HTTP ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise ModelError(f"Could not ask {host} for its version: {exc}.") from None
    if response.status_code != 200:
        raise _not_ollama(host, f"GET /api/version answered HTTP {response.status_code}")
    try:
        payload = response.json()
    except ValueError:
        raise _not_ollama(host, "GET /api/version did not answer JSON") from None
    version = payload.get("version") if isinstance(payload, dict) else None
    if not isinstance(version, str) or not version:
        raise _not_ollama(host, "GET /api/version has no `version` field")
    return version


def _not_ollama(host: str, why: str) -> ModelError:
    port = urlsplit(host).port
    return ModelError(
        f"Something answers at {host}, but it is not an Ollama server: {why}.",
        hint=f"Another program uses port {port}. Stop it, or point OLLAMA_HOST / --host at "
        "the Ollama server (or at a free port, to let ollagraph start one there).",
    )


def is_local(host: str) -> bool:
    """Whether `host` names this machine (loopback), so ollagraph may start a server there.

    Args:
        host: Server URL.
    """
    name = (urlsplit(host).hostname or "").lower()
    if name in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def may_auto_pull(settings: Settings) -> bool:
    """Whether a missing model may be pulled without being asked (`auto_pull`) at this server.

    Only a server on this machine (loopback) is pulled onto implicitly. A remote Ollama
    (`OLLAMA_HOST=http://gpu-box:11434`) is shared and used as is: a pull there costs its disk and
    its owner's bandwidth, so it happens only when asked (`agent models pull NAME --host URL`,
    like `ollama pull` with `OLLAMA_HOST`). An OpenAI-compatible server is never pulled onto.

    Args:
        settings: `auto_pull`, `backend` and `host`.
    """
    return settings.auto_pull and settings.backend == "ollama" and is_local(settings.host)


def _manageable(url: str) -> bool:
    """Whether ollagraph may start a server for `url`: plain http, loopback, no proxy path."""
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.path in ("", "/") and is_local(url)


def server_command(settings: Settings) -> list[str]:
    """The command that starts a model server here.

    Args:
        settings: `ollama_path` names the executable; empty means `ollama` on PATH.

    Returns:
        `[ollama, "serve"]` when an Ollama executable is found, else the embedded engine
        `[python, "-m", "ollagraph.agents.engine", "serve"]`.

    Raises:
        ModelError: `ollama_path` is set but is not an executable file.
    """
    if settings.ollama_path:
        path = Path(settings.ollama_path).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ModelError(
                f"ollama_path {path} is not an executable file.",
                hint="Fix ollama_path, or leave it empty to use `ollama` on PATH or the "
                "embedded engine.",
            )
        return [str(path), "serve"]
    found = shutil.which("ollama")
    if found:
        return [found, "serve"]
    return [sys.executable, "-m", ENGINE_MODULE, "serve"]


def _kind(command: Sequence[str]) -> ServerKind:
    return "engine" if list(command[1:3]) == ["-m", ENGINE_MODULE] else "ollama"


@dataclass(eq=False)
class ServerHandle:
    """The model server a run talks to, and whether this process owns it.

    Attributes:
        url: Base URL of the server (what `ChatOllama(base_url=...)` and `ollama.Client` take).
        version: The version `/api/version` reported.
        owned: True when this process started the server; only then may it be stopped or
            restarted.
        kind: "external" (found running), "ollama" (`ollama serve`) or "engine" (embedded).
        command: The command that started it (owned servers).
        log_path: The log file its stdout and stderr go to (owned servers).
        leave_running: Do not stop it at exit (`settings.leave_server_running`).
        start_timeout: Seconds a (re)start may take before it is abandoned.
        restarts: How many times it was restarted after dying.
        generation: Increases at every restart (see `recover`).
        process: The running child process (owned servers).
    """

    url: str
    version: str | None = None
    owned: bool = False
    kind: ServerKind = "external"
    command: tuple[str, ...] = ()
    log_path: Path | None = None
    leave_running: bool = False
    start_timeout: float = 60.0
    restarts: int = 0
    generation: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int | None:
        """Process id (and process group id) of an owned server, else None."""
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        """Whether an owned server's process is still running (True for a server not owned)."""
        if not self.owned or self.process is None:
            return True
        return self.process.poll() is None

    def describe(self) -> str:
        """One line for `-v` output and `agent doctor`."""
        name = "embedded engine" if self.kind == "engine" else "Ollama"
        text = f"{name} {self.version or '?'} at {self.url}"
        if self.owned:
            text += f" (started by ollagraph, pid {self.pid}, log {self.log_path})"
        return text

    # -- lifecycle ------------------------------------------------------------------------------

    def stop(self, *, force: bool = False) -> None:
        """Stop an owned server: SIGTERM to its process group, SIGKILL after a grace period.

        Does nothing for a server this process did not start, when `leave_running` is set (unless
        `force`), or when it was stopped already. Safe to call more than once.

        Args:
            force: Stop it even when `leave_running` is set.
        """
        with _lock:
            if not self.owned or self.process is None or self._stopped:
                return
            if self.leave_running and not force:
                return
            self._stopped = True
            terminate_group(self.process, STOP_GRACE)

    def recover(self, since: int | None = None) -> bool:
        """Restart an owned server that died, once.

        Call it after a request failed; when it returns True, retry the request once.

        Args:
            since: The `generation` the caller saw before its request. When the server was
                restarted since then (by another thread), the caller should simply retry.

        Returns:
            True when the server was restarted (now or since `since`) and answers again; False
            when there is nothing to recover: the server is not owned, or it is still running
            (the failure had another cause).

        Raises:
            ModelError: It died again after a restart ("stopped unexpectedly twice"), or the
                restart failed.
        """
        with _lock:
            if not self.owned or self.process is None or self._stopped:
                return False
            if since is not None and since != self.generation:
                return True
            code = self._exit_code()
            if code is None:
                return False
            if self.restarts >= MAX_RESTARTS:
                kill_group(self.process.pid)
                raise ModelError(
                    f"The model server at {self.url} stopped unexpectedly twice "
                    f"(last {describe_exit(code)}); see {self.log_path}.",
                    hint=tail_hint(self.log_path, None),
                ) from None
            kill_group(self.process.pid)
            self.restarts += 1
            self.generation += 1
            offset = log_offset(self.log_path)
            self.process = spawn(
                self.command,
                self.url,
                self.log_path,
                note=f"restarting after the server {describe_exit(code)}",
            )
            self.version = _wait_healthy(
                self.process, self.command, self.url, self.start_timeout, self.log_path, offset
            )
            return True

    def _exit_code(self) -> int | None:
        """The owned server's exit code, or None while it runs and answers.

        A server killed mid-request closes its sockets a moment before its exit status can be
        collected, so when it does not answer `/api/version` it gets `EXIT_GRACE` seconds to
        finish dying.
        """
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            return code
        try:
            if probe(self.url, timeout=EXIT_GRACE) is not None:
                return None
        except ModelError:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.process.wait(timeout=EXIT_GRACE)
        return None


def _wait_healthy(
    process: subprocess.Popen[bytes],
    command: Sequence[str],
    url: str,
    timeout: float,
    log_path: Path | None,
    offset: int,
) -> str:
    """Poll `/api/version` with backoff until it answers; kill the process group on failure."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        code = process.poll()
        if code is not None:
            kill_group(process.pid)
            raise ModelError(
                f"The model server `{' '.join(command)}` {describe_exit(code)} before it "
                f"answered at {url}.",
                hint=tail_hint(log_path, offset),
            ) from None
        remaining = deadline - time.monotonic()
        try:
            version = probe(url, timeout=max(0.2, min(1.0, remaining)))
        except ModelError:
            terminate_group(process, 1.0)
            raise
        if version is not None:
            return version
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            terminate_group(process, 1.0)
            raise ModelError(
                f"The model server started by ollagraph did not answer at {url} within "
                f"{timeout:g} s.",
                hint=tail_hint(log_path, offset)
                + "\nRaise server_start_timeout, or start the server yourself.",
            ) from None
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 1.0)


def _start_owned(settings: Settings, url: str) -> ServerHandle:
    command = server_command(settings)
    kind = _kind(command)
    if kind == "engine":
        import importlib.util

        if importlib.util.find_spec(ENGINE_MODULE) is None:
            raise ModelError(
                f"Nothing answers at {url}, no `ollama` executable was found, and the embedded "
                "engine is not installed.",
                hint="Install Ollama (https://ollama.com/download) and run `ollama serve`, or "
                "reinstall ollagraph.",
            )
    log_path = state_path("logs", "server.log")
    offset = log_offset(log_path)
    process = spawn(command, url, log_path, note=f"starting the {kind} server")
    try:
        version = _wait_healthy(
            process, command, url, settings.server_start_timeout, log_path, offset
        )
    except ModelError:
        # Another program may have started a server at the same address meanwhile.
        with contextlib.suppress(ModelError):
            other = probe(url)
            if other is not None and process.poll() is not None:
                return ServerHandle(url=url, version=other)
        raise
    except BaseException:  # Ctrl-C while waiting: leave nothing running behind
        terminate_group(process, 1.0)
        raise
    handle = ServerHandle(
        url=url,
        version=version,
        owned=True,
        kind=kind,
        command=tuple(command),
        log_path=log_path,
        leave_running=settings.leave_server_running,
        start_timeout=settings.server_start_timeout,
        process=process,
    )
    atexit.register(handle.stop)
    return handle


def ensure_server(settings: Settings, *, probe_timeout: float = PROBE_TIMEOUT) -> ServerHandle:
    """Find the model server for `settings.host`, starting one when allowed and needed.

    The handle becomes this process's current server (`current_server()`). Calling it again for
    the same URL returns the same handle while that server answers.

    Args:
        settings: `host`, `manage_server`, `ollama_path`, `leave_server_running` and
            `server_start_timeout` are used.
        probe_timeout: Seconds to wait for `/api/version` before deciding nothing answers.

    Returns:
        A handle that owns the server only when this call started it.

    Raises:
        ModelError: Nothing answers and a server may not be started here (remote host, https,
            a proxy path, or `manage_server` off); something that is not Ollama answers; or a
            started server exited early or did not answer within `server_start_timeout` (with
            the log's last lines).
    """
    global _current
    url = settings.host
    with _lock:
        existing = _current
        same = existing is not None and existing.url == url and not existing._stopped
        if same and existing is not None and existing.owned and not existing.alive():
            existing.recover()
            return existing
        version = probe(url, probe_timeout)
        if version is not None and same and existing is not None:
            existing.version = version
            return existing
        if version is not None:
            handle = ServerHandle(url=url, version=version)
        elif not _manageable(url):
            raise ModelError(
                f"Could not reach Ollama at {url}.",
                hint="ollagraph starts a server only on this machine (127.0.0.1), so check that "
                "Ollama runs there and listens on that address (OLLAMA_HOST=0.0.0.0 on that "
                "machine), or unset --host / OLLAMA_HOST to use a local server.",
            )
        elif not settings.manage_server:
            raise ModelError(
                f"Could not reach Ollama at {url}.",
                hint="Start a server with `ollama serve` (or `agent serve`), or set "
                "manage_server = true to let ollagraph start one.",
            )
        else:
            handle = _start_owned(settings, url)
        _current = handle
        return handle


def current_server() -> ServerHandle | None:
    """The handle `ensure_server` returned last in this process, or None."""
    return _current


def clear_current_server(*, stop: bool = True) -> None:
    """Forget the current server handle (tests, `/model` switches), stopping it if owned.

    Args:
        stop: Stop an owned server first (forced, even with `leave_running`).
    """
    global _current
    with _lock:
        handle, _current = _current, None
    if handle is not None and stop:
        handle.stop(force=True)


def with_recovery(fn: Callable[[], T], handle: ServerHandle | None = None) -> T:
    """Call `fn`; if it fails because the owned server died, restart it once and call again.

    Wrap a whole model request (for a streamed answer: the whole stream, and mind that text
    already shown would be shown again). Any exception counts, so this works inside or outside
    `models.model_errors`; it is re-raised unchanged unless the owned server's process is dead.

    Args:
        fn: The request.
        handle: The server (default: `current_server()`).

    Raises:
        ModelError: The server died a second time (also when the retried request is the one
            it dies on).
    """
    handle = handle if handle is not None else current_server()
    if handle is None:
        return fn()
    generation = handle.generation
    try:
        return fn()
    except Exception:
        if not handle.recover(since=generation):
            raise
    generation = handle.generation
    try:
        return fn()
    except Exception:
        # The restarted server died too: say so ("stopped unexpectedly twice"), not just
        # "disconnected". Any other failure of the retry is re-raised unchanged.
        handle.recover(since=generation)
        raise


def stop_all() -> None:
    """Stop the current server if this process owns it (honours `leave_running`)."""
    handle = current_server()
    if handle is not None:
        handle.stop()


__all__ = [
    "ServerHandle",
    "clear_current_server",
    "current_server",
    "ensure_server",
    "is_local",
    "log_tail",
    "may_auto_pull",
    "probe",
    "server_command",
    "stop_all",
    "with_recovery",
]
