"""The model server process: start it in its own group with a log, stop the group, read the log.

Used by `ollagraph.agents.daemon`. A server is started with `start_new_session=True` (its own
process group, so stopping it also stops the model runners it forks), stdin from /dev/null, and
stdout/stderr appended to a log file — never an unread pipe.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from ollagraph.agents.errors import ModelError

LOG_TAIL_LINES = 20


def describe_exit(code: int) -> str:
    """How a process ended, in words (`exited with code 1`, `was killed by SIGKILL`)."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def host_port(url: str) -> str:
    """`host:port` of a server URL, as `OLLAMA_HOST` takes it."""
    parts = urlsplit(url)
    name = parts.hostname or "127.0.0.1"
    if ":" in name:
        name = f"[{name}]"
    return f"{name}:{parts.port or 11434}"


def open_log(log_path: Path) -> IO[bytes]:
    """Open the server log for appending, or raise a ModelError that says what to do."""
    try:
        return log_path.open("ab")
    except OSError as exc:
        raise ModelError(
            f"Cannot write the model server log {log_path}: {exc.strerror or exc}.",
            hint="Set OLLAGRAPH_HOME to a writable directory.",
        ) from None


def spawn(
    command: Sequence[str], url: str, log_path: Path | None, *, note: str
) -> subprocess.Popen[bytes]:
    """Start `command` in its own process group with its output appended to `log_path`."""
    env = dict(os.environ)
    env["OLLAMA_HOST"] = host_port(url)
    env.setdefault("PYTHONUNBUFFERED", "1")
    log = open_log(log_path) if log_path is not None else None
    try:
        if log is not None:
            stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            log.write(
                f"\n=== ollagraph {stamp}: {note}: OLLAMA_HOST={env['OLLAMA_HOST']} "
                f"{' '.join(command)}\n".encode()
            )
            log.flush()
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log if log is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise ModelError(
            f"Could not start the model server `{' '.join(command)}`: {exc.strerror or exc}.",
            hint="Check ollama_path, or install Ollama from https://ollama.com/download.",
        ) from None
    finally:
        if log is not None:
            log.close()  # the child holds its own copy of the descriptor


def kill_group(pgid: int) -> None:
    """SIGKILL a whole process group; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def terminate_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process group, wait up to `grace` seconds, then SIGKILL it."""
    pgid = process.pid
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    # Children of the leader (model runners) share its group: make sure none survives.
    kill_group(pgid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)


def log_offset(log_path: Path | None) -> int:
    """The log's current size: where the output of a run started now will begin."""
    if log_path is None:
        return 0
    try:
        return log_path.stat().st_size
    except OSError:
        return 0


def log_tail(log_path: Path | None, offset: int | None = 0, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines a server wrote to its log since byte `offset`.

    Args:
        log_path: The server log.
        offset: Where the current run's output starts (None: anywhere in the file).
        lines: How many lines to return at most.
    """
    if log_path is None:
        return ""
    try:
        with log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            start = max(offset or 0, size - 64 * 1024)
            log.seek(start)
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def tail_hint(log_path: Path | None, offset: int | None) -> str:
    """The log's last lines, indented, for the hint of a ModelError."""
    tail = log_tail(log_path, offset)
    if not tail.strip():
        return f"The server wrote nothing to {log_path}."
    indented = "\n".join("  " + line for line in tail.splitlines())
    return f"Last lines of {log_path}:\n{indented}"
