"""Where a worker's model comes from: a local folder or file, or a Hugging Face repo id.

`ModelSource.parse("org/name@rev")` or a path. `pretrained_args()` gives what every
`from_pretrained` takes (name or path, revision, cache_dir, local_files_only, token from
`$HF_TOKEN`); `loading(task)` wraps a load so that a model that is neither on disk nor
reachable becomes a `WorkerError` naming the model and how to fetch it on a connected machine.
"""

from __future__ import annotations

import functools
import importlib
import os
import socket
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollagraph.agents.errors import WorkerError

_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@dataclass(frozen=True)
class ModelSource:
    """A model to load.

    Attributes:
        name: A local path, or a Hugging Face repo id such as `org/name`.
        revision: A branch, tag or commit of the repo (None: the default branch).
        cache_dir: Where Hugging Face downloads are cached (None: the hub's default).
        local_files_only: Never reach the hub; use the cache or the local path only.
    """

    name: str
    revision: str | None = None
    cache_dir: str | None = None
    local_files_only: bool = False

    @classmethod
    def parse(
        cls, spec: str, *, cache_dir: str | None = None, local_files_only: bool = False
    ) -> ModelSource:
        """Read `path`, `org/name` or `org/name@revision`.

        Raises:
            WorkerError: The spec is empty.
        """
        spec = spec.strip()
        if not spec:
            raise WorkerError(
                "No model is set for this task.", hint="Pass --model or set it in the config."
            )
        revision = None
        if "@" in spec and not Path(spec).expanduser().exists():
            spec, revision = spec.rsplit("@", 1)
        return cls(spec, revision or None, cache_dir or None, local_files_only)

    @property
    def local_path(self) -> Path | None:
        """The model's folder or file when `name` is a path on this machine, else None."""
        path = Path(self.name).expanduser()
        if path.exists():
            return path
        return None

    @property
    def offline(self) -> bool:
        """True when the hub must not be reached (the flag or $HF_HUB_OFFLINE)."""
        return self.local_files_only or any(
            os.environ.get(var, "").lower() in ("1", "true", "yes", "on") for var in _OFFLINE_ENV
        )

    def pretrained_args(self) -> tuple[str, dict[str, Any]]:
        """(name or path, keyword arguments) for `from_pretrained`."""
        path = self.local_path
        if path is not None:
            return str(path), {"local_files_only": True}
        kwargs: dict[str, Any] = {"local_files_only": self.offline or not hub_reachable()}
        if self.revision:
            kwargs["revision"] = self.revision
        if self.cache_dir:
            kwargs["cache_dir"] = self.cache_dir
        token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
        if token:
            kwargs["token"] = token
        return self.name, kwargs

    def looks_local(self) -> bool:
        """True when `name` reads like a path (so a missing one is a missing file, not a repo)."""
        return (
            self.name.startswith((".", "/", "~"))
            or self.name.count("/") > 1
            or (os.sep != "/" and os.sep in self.name)
        )

    @contextmanager
    def loading(self, task: str) -> Iterator[None]:
        """Turn the errors a load raises when the model cannot be found into a `WorkerError`.

        Args:
            task: The task, for the message (e.g. `image-to-text`).

        Raises:
            WorkerError: The path is missing, or the repo is neither cached nor reachable.
        """
        if self.looks_local() and self.local_path is None:
            raise WorkerError(
                f"Model path {self.name} for {task} does not exist.",
                hint="Pass an existing folder, or a Hugging Face repo id such as org/name.",
            )
        _quiet_loading_bars()
        try:
            yield
        except WorkerError:
            raise
        except (OSError, ValueError) as exc:
            raise WorkerError(self._message(task, exc), hint=self._hint()) from None

    def _message(self, task: str, exc: BaseException) -> str:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.local_path is not None:
            return f"Cannot load the {task} model from {self.name}: {first}"
        if not self.offline and hub_reachable():
            return f"Cannot load the {task} model {self.name!r} from the Hugging Face hub: {first}"
        where = "offline mode is on" if self.offline else "the Hugging Face hub cannot be reached"
        return (
            f"Cannot load the {task} model {self.name!r}: it is not in the local Hugging Face "
            f"cache and {where}."
        )

    def _hint(self) -> str:
        if self.local_path is not None:
            return "Check that the folder holds a complete checkpoint (config and weights)."
        revision = f" --revision {self.revision}" if self.revision else ""
        return (
            f"On a connected machine run `hf download {self.name}{revision}` and copy its "
            "Hugging Face cache (~/.cache/huggingface) here, or pass a local folder as the model."
        )


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (checked once per process).

    Without it every download is retried for ~25 s before failing; with the answer known, an
    unreachable hub means "use the local cache only", which fails at once when a model is not
    cached. Behind an HTTP(S) proxy the direct probe says nothing, so it is skipped (True).
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return True
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parts = urllib.parse.urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "huggingface.co", port), timeout):
            return True
    except OSError:
        return False


def _quiet_loading_bars() -> None:
    """Hide transformers' and diffusers' per-load progress bars (download bars stay)."""
    for name in ("transformers", "diffusers"):
        if name in sys.modules:  # only libraries the runner already imported
            logging = importlib.import_module(f"{name}.utils.logging")
            logging.disable_progress_bar()


__all__ = ["ModelSource"]
