"""SHA-256 digests of model files, computed once and remembered.

Ollama names every blob by its SHA-256 (`sha256:<hex>`), and `/api/tags` shows digests. Hashing
a model file takes a while, so a digest is cached in `$OLLAGRAPH_HOME/models/digests.json`,
keyed by the file's path, size and modification time: a changed file is hashed again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path

CHUNK_BYTES = 8 * 1024 * 1024


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file's contents.

    Raises:
        OSError: The file cannot be read.
    """
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class DigestCache:
    """SHA-256 digests of files, persisted as JSON and keyed by (path, size, mtime).

    Attributes:
        path: The JSON file holding the cache.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, int | str]] | None = None

    def _load(self) -> dict[str, dict[str, int | str]]:
        if self._entries is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._entries = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._entries = {}
        return self._entries

    def _save(self) -> None:
        entries = self._load()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")
        temp.replace(self.path)

    def sha256(self, file: Path) -> str:
        """Return the hex SHA-256 of `file`, hashing it only when it is new or changed.

        Raises:
            OSError: The file cannot be read.
        """
        resolved = file.resolve()
        stat = resolved.stat()
        key = str(resolved)
        with self._lock:
            entry = self._load().get(key)
            if (
                entry is not None
                and entry.get("size") == stat.st_size
                and entry.get("mtime_ns") == stat.st_mtime_ns
                and isinstance(entry.get("sha256"), str)
            ):
                return str(entry["sha256"])
        digest = sha256_file(resolved)
        with self._lock:
            self._load()[key] = {
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "sha256": digest,
            }
            with contextlib.suppress(OSError):  # read-only state: re-hash next time
                self._save()
        return digest

    def remember(self, file: Path, digest: str) -> None:
        """Record a digest already known for `file` (e.g. computed while copying it)."""
        resolved = file.resolve()
        stat = resolved.stat()
        with self._lock:
            self._load()[str(resolved)] = {
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "sha256": digest,
            }
            with contextlib.suppress(OSError):
                self._save()


__all__ = ["DigestCache", "sha256_file"]
