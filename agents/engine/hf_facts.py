"""What `/api/show` and `/api/tags` say about a Hugging Face checkpoint folder.

Everything is read from its files (`config.json`, the safetensors headers, the tokenizer's chat
template) without loading the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ollagraph.agents.engine.gguf import human_number
from ollagraph.agents.engine.registry import ModelFacts, _safetensors_parameters

_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def read_config(folder: Path) -> dict[str, Any]:
    """The checkpoint's `config.json` (empty when unreadable)."""
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def chat_template_text(folder: Path) -> str:
    """The chat template of a checkpoint (`chat_template.jinja` or `tokenizer_config.json`)."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):  # named templates: use the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), "")
    return template if isinstance(template, str) else ""


def hf_facts(folder: Path) -> ModelFacts:
    """Describe a checkpoint folder: family, size, context length, template, capabilities.

    Args:
        folder: The folder with `config.json`, weights and a tokenizer.
    """
    config = read_config(folder)
    family = str(config.get("model_type") or "unknown")
    parameters = sum(_safetensors_parameters(path) for path in folder.glob("*.safetensors"))
    context = int(config.get("max_position_embeddings") or 2048)
    template = chat_template_text(folder)
    capabilities = ["completion"]
    if "tools" in template:
        capabilities.append("tools")
    stop: list[str] = []
    if "<|im_start|>" in template:
        stop += ["<|im_start|>", "<|im_end|>"]
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    model_info: dict[str, Any] = {
        "general.architecture": family,
        "general.parameter_count": parameters,
        f"{family}.context_length": context,
        f"{family}.embedding_length": int(config.get("hidden_size") or 0),
        f"{family}.block_count": int(config.get("num_hidden_layers") or 0),
        f"{family}.attention.head_count": int(config.get("num_attention_heads") or 0),
        f"{family}.vocab_size": int(config.get("vocab_size") or 0),
    }
    return ModelFacts(
        format="safetensors",
        family=family,
        parameter_size=human_number(parameters) if parameters else "unknown",
        quantization_level=_DTYPES.get(dtype, dtype.upper()),
        capabilities=tuple(capabilities),
        context_length=context,
        model_info=model_info,
        template=template,
        stop=tuple(stop),
    )


__all__ = ["chat_template_text", "hf_facts", "read_config"]
