"""Which models are present: blobs and manifests under `$OLLAGRAPH_HOME/models`, and pulling.

The layout follows Ollama's: `models/blobs/sha256-<hex>` holds each file by its digest, and
`models/manifests/<model>/<tag>` is a JSON manifest listing a model's layers. Pulling a bundled
model copies its files from site-packages into blobs (a real byte copy, reported as Ollama
reports a download: `pulling manifest`, `pulling <digest>` with `total`/`completed`, `verifying
sha256 digest`, `writing manifest`, `success`), then writes the manifest. Only then does the model
show in `/api/tags` and answer chats. User-registered GGUF files are present while they exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollagraph.agents.engine.digests import CHUNK_BYTES, DigestCache
from ollagraph.agents.engine.lora import identity_digest
from ollagraph.agents.engine.protocol import APIError
from ollagraph.agents.engine.registry import (
    ModelSpec,
    Registry,
    install_hint,
    normalize_name,
)

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
FILE_MEDIA_TYPE = "application/vnd.ollagraph.model.file"
PULL_NOT_FOUND = "pull model manifest: file does not exist"


@dataclass(frozen=True)
class PresentModel:
    """A model that is ready to use.

    Attributes:
        spec: What the registry knows about it.
        digest: Hex digest shown by `/api/tags` (of the manifest, or of a registered file).
        size: Bytes on disk.
        modified_at: When it was pulled or registered (seconds since the epoch).
        files: Its files by name inside the model (blobs for pulled models).
        problem: Why it cannot be loaded although registered (a LoRA adapter is missing or
            changed since registration), or None.
    """

    spec: ModelSpec
    digest: str
    size: int
    modified_at: float
    files: dict[str, Path]
    problem: str | None = None

    @property
    def name(self) -> str:
        """Canonical `model:tag`."""
        return self.spec.name

    @property
    def weights(self) -> Path:
        """The file (GGUF) or folder the backend loads."""
        if self.spec.source.is_dir():
            return self.spec.source
        return self.files.get(self.spec.source.name, self.spec.source)


class Store:
    """Pulled models (blobs and manifests) and registered ones, under one models folder.

    Attributes:
        models_dir: `$OLLAGRAPH_HOME/models`.
        registry: The models that can be pulled or are registered.
    """

    def __init__(self, models_dir: Path, registry: Registry | None = None) -> None:
        self.models_dir = models_dir
        self.registry = registry or Registry(models_dir)
        self.digests = DigestCache(models_dir / "digests.json")
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @property
    def blobs_dir(self) -> Path:
        """Where pulled files live, named by digest."""
        return self.models_dir / "blobs"

    def blob_path(self, digest: str) -> Path:
        """The blob file for `sha256:<hex>` (or bare hex)."""
        return self.blobs_dir / f"sha256-{digest.removeprefix('sha256:')}"

    def manifest_path(self, name: str) -> Path:
        """The manifest file of a model (`manifests/<model>/<tag>`)."""
        model, _, tag = normalize_name(name).rpartition(":")
        return self.models_dir / "manifests" / model / tag

    def _lock_for(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    # -- reading ------------------------------------------------------------------------------

    def _read_manifest(self, name: str) -> tuple[dict[str, Any], bytes] | None:
        try:
            raw = self.manifest_path(name).read_bytes()
            data = json.loads(raw)
        except (OSError, ValueError):
            return None
        return (data, raw) if isinstance(data, dict) else None

    def present(self, name: str) -> PresentModel | None:
        """Return the model if it is pulled (or registered and its file exists), else None."""
        spec = self.registry.lookup(name)
        if spec is None:
            return None
        if not spec.bundled and spec.source.is_dir():  # a registered checkpoint folder
            return self._present_folder(spec)
        if not spec.bundled:
            try:
                stat = spec.source.stat()
                digest = self.digests.sha256(spec.source)
            except OSError:
                return None
            if spec.adapters:
                return self._present_with_adapters(spec, digest, stat.st_size, stat.st_mtime)
            return PresentModel(
                spec=spec,
                digest=digest,
                size=stat.st_size,
                modified_at=spec.added_at or stat.st_mtime,
                files={spec.source.name: spec.source},
            )
        manifest = self._read_manifest(spec.name)
        if manifest is None:
            return None
        data, raw = manifest
        files: dict[str, Path] = {}
        size = 0
        for layer in data.get("layers") or []:
            blob = self.blob_path(str(layer.get("digest", "")))
            try:
                if blob.stat().st_size != int(layer.get("size", -1)):
                    return None
            except OSError:
                return None
            files[str(layer.get("file", blob.name))] = blob
            size += int(layer["size"])
        return PresentModel(
            spec=spec,
            digest=hashlib.sha256(raw).hexdigest(),
            size=size,
            modified_at=self.manifest_path(spec.name).stat().st_mtime,
            files=files,
        )

    def _present_with_adapters(
        self, spec: ModelSpec, digest: str, size: int, mtime: float
    ) -> PresentModel:
        """A registered GGUF model with LoRA adapters: its digest covers base and adapters.

        The digest uses each adapter's current SHA-256, so it changes when a file does; an
        adapter that is missing or changed since registration makes the model unloadable
        (`problem`) until it is registered again.
        """
        identity: list[tuple[str, float]] = []
        files = {spec.source.name: spec.source}
        problems: list[str] = []
        for adapter in spec.adapters:
            try:
                current = self.digests.sha256(adapter.path)
                size += adapter.path.stat().st_size
            except OSError:
                current = adapter.sha256
                problems.append(f"LoRA adapter {adapter.path} of {spec.name} is missing")
            else:
                if current != adapter.sha256:
                    problems.append(
                        f"LoRA adapter {adapter.path} of {spec.name} changed since it was "
                        f"registered (sha256 {adapter.sha256[:12]}, now {current[:12]})"
                    )
            identity.append((current, adapter.scale))
            files[f"adapter-{len(files)}-{adapter.path.name}"] = adapter.path
        problem = None
        if problems:
            problem = "; ".join(problems) + (
                f"; register it again: agent models add {spec.name} {spec.source} --lora ..."
            )
        return PresentModel(
            spec=spec,
            digest=identity_digest(digest, identity),
            size=size,
            modified_at=spec.added_at or mtime,
            files=files,
            problem=problem,
        )

    def _present_folder(self, spec: ModelSpec) -> PresentModel | None:
        """A registered folder: its digest is that of its file names and file digests."""
        try:
            files = dict(spec.files())
            listing = "".join(
                f"{name}\0{self.digests.sha256(path)}\n" for name, path in files.items()
            )
            size = sum(path.stat().st_size for path in files.values())
            mtime = spec.source.stat().st_mtime
        except OSError:
            return None
        return PresentModel(
            spec=spec,
            digest=hashlib.sha256(listing.encode()).hexdigest(),
            size=size,
            modified_at=spec.added_at or mtime,
            files=files,
        )

    def list_present(self) -> list[PresentModel]:
        """Every present model, most recently pulled or registered first."""
        names = list(self.registry.bundled()) + list(self.registry.user_models())
        models = [model for name in names if (model := self.present(name)) is not None]
        return sorted(models, key=lambda model: model.modified_at, reverse=True)

    # -- pulling ------------------------------------------------------------------------------

    def pull(self, name: str) -> Generator[dict[str, Any], None, None]:
        """Pull a bundled model, yielding Ollama's progress objects.

        The first object (`pulling manifest`) is yielded before anything can fail, as Ollama
        does; an unknown model then raises.

        Args:
            name: The model to pull.

        Raises:
            APIError: The model is not bundled (500, `pull model manifest: file does not
                exist`, Ollama's words), or copying failed.
        """
        yield {"status": "pulling manifest"}
        spec = self.registry.lookup(name)
        if spec is None:
            hint = install_hint(name)
            message = PULL_NOT_FOUND if hint is None else f"{PULL_NOT_FOUND} (run: {hint})"
            raise APIError(500, message)
        if not spec.bundled:
            if self.present(spec.name) is None:
                raise APIError(500, f"{PULL_NOT_FOUND}: {spec.source} is missing")
            yield {"status": "success"}
            return
        with self._lock_for(spec.name):
            layers: list[dict[str, Any]] = []
            for file_name, path in spec.files():
                try:
                    digest = self.digests.sha256(path)
                    total = path.stat().st_size
                except OSError as exc:
                    raise APIError(500, f"cannot read {path}: {exc.strerror or exc}") from None
                yield from self._copy_layer(path, digest, total)
                layers.append(
                    {
                        "mediaType": MODEL_MEDIA_TYPE
                        if path.suffix == ".gguf"
                        else FILE_MEDIA_TYPE,
                        "digest": f"sha256:{digest}",
                        "size": total,
                        "file": file_name,
                    }
                )
            yield {"status": "verifying sha256 digest"}
            yield {"status": "writing manifest"}
            self._write_manifest(spec, layers)
            yield {"status": "success"}

    def _copy_layer(self, source: Path, digest: str, total: int) -> Iterator[dict[str, Any]]:
        """Copy one file into its blob, yielding progress; verify the digest of the copy."""
        status = f"pulling {digest[:12]}"
        progress = {"status": status, "digest": f"sha256:{digest}", "total": total}
        blob = self.blob_path(digest)
        if blob.is_file() and blob.stat().st_size == total:
            yield {**progress, "completed": total}
            return
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        partial = blob.with_name(f"{blob.name}-partial-{os.getpid()}-{threading.get_ident()}")
        hasher = hashlib.sha256()
        completed = 0
        yield dict(progress)
        try:
            with source.open("rb") as reader, partial.open("wb") as writer:
                while chunk := reader.read(CHUNK_BYTES):
                    writer.write(chunk)
                    hasher.update(chunk)
                    completed += len(chunk)
                    yield {**progress, "completed": completed}
            if hasher.hexdigest() != digest:
                raise APIError(
                    500, f"digest mismatch, expected sha256:{digest}, got {hasher.hexdigest()}"
                )
            partial.replace(blob)
        except OSError as exc:
            raise APIError(500, f"cannot copy {source}: {exc.strerror or exc}") from None
        finally:
            partial.unlink(missing_ok=True)
        self.digests.remember(blob, digest)

    def _write_manifest(self, spec: ModelSpec, layers: list[dict[str, Any]]) -> None:
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "layers": layers,
            "ollagraph": {"kind": spec.kind, "source": str(spec.source), "pulled_at": time.time()},
        }
        path = self.manifest_path(spec.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        temp.replace(path)

    # -- deleting -----------------------------------------------------------------------------

    def delete(self, name: str) -> bool:
        """Remove a pulled model (and blobs no other model uses), or unregister a user model.

        Returns:
            Whether there was a model to remove.
        """
        spec = self.registry.lookup(name)
        if spec is None:
            return False
        if not spec.bundled:
            return self.registry.unregister(spec.name)
        manifest = self.manifest_path(spec.name)
        if not manifest.is_file():
            return False
        manifest.unlink()
        self._prune_blobs()
        return True

    def _prune_blobs(self) -> None:
        used: set[str] = set()
        for name in self.registry.bundled():
            manifest = self._read_manifest(name)
            for layer in (manifest[0].get("layers") or []) if manifest else []:
                used.add(self.blob_path(str(layer.get("digest", ""))).name)
        if not self.blobs_dir.is_dir():
            return
        for blob in self.blobs_dir.iterdir():
            if blob.name not in used and "-partial-" not in blob.name:
                blob.unlink(missing_ok=True)


__all__ = ["PULL_NOT_FOUND", "PresentModel", "Store"]
