"""Where ollagraph keeps its state on disk.

Everything the toolkit writes (chat threads, documents stores, the built sample database, logs,
the chat history) lives under one directory: `$OLLAGRAPH_HOME`, else `$XDG_DATA_HOME/ollagraph`,
else `~/.local/share/ollagraph`. Tests point `OLLAGRAPH_HOME` at a temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from ollagraph.agents.errors import StateDirError


def state_dir(create: bool = True) -> Path:
    """Return the state directory, creating it if asked.

    Args:
        create: Create the directory (and parents) when it does not exist.

    Raises:
        StateDirError: The directory cannot be created or is not writable.
    """
    home = os.environ.get("OLLAGRAPH_HOME")
    if home:
        path = Path(home).expanduser()
    else:
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        path = Path(xdg) / "ollagraph"
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateDirError(
                f"Cannot create the state directory {path}: {_why(path, exc)}.",
                hint="Set OLLAGRAPH_HOME to a writable directory.",
            ) from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise StateDirError(
                f"The state directory {path} is not writable.",
                hint="Fix its permissions or set OLLAGRAPH_HOME to a writable directory.",
            )
    return path


def state_path(*parts: str) -> Path:
    """Return a path inside the state directory, creating its parent folder.

    Args:
        *parts: Path components below the state directory.
    """
    path = state_dir().joinpath(*parts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateDirError(
            f"Cannot create {path.parent}: {_why(path.parent, exc)}.",
            hint="Free some space or fix the permissions there, or set OLLAGRAPH_HOME to a "
            "writable directory.",
        ) from None
    return path


def _why(path: Path, exc: OSError) -> str:
    """Say why a folder could not be made: name the file that stands in its way, if one does."""
    for candidate in (path, *path.parents):
        if candidate.exists() and not candidate.is_dir():
            return f"{candidate} is a file, not a directory"
    return exc.strerror or str(exc)
