"""Engine settings read from the environment, on the bundled SmolLM2 loaded in llama.cpp."""

from __future__ import annotations

import pytest

from ollagraph.agents.engine.llama_backend import LlamaRunner, Piece
from ollagraph.agents.engine.llama_setup import flash_attention
from ollagraph.agents.engine.protocol import GenerationOptions
from ollagraph.agents.engine.registry import SMOLLM2, bundled_models

GGUF = next((m.source for m in bundled_models() if m.name == SMOLLM2), None)
pytestmark = pytest.mark.skipif(GGUF is None, reason="the bundled SmolLM2 is not installed")


@pytest.mark.parametrize(
    ("value", "expected"), [(None, False), ("0", False), ("1", True), ("true", True)]
)
def test_flash_attention_follows_ollamas_variable(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    if value is None:
        monkeypatch.delenv("OLLAMA_FLASH_ATTENTION", raising=False)
    else:
        monkeypatch.setenv("OLLAMA_FLASH_ATTENTION", value)
    assert flash_attention() is expected


def test_a_model_loaded_with_flash_attention_uses_it_and_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import llama_cpp

    assert GGUF is not None
    answers = {}
    for value in ("0", "1"):
        monkeypatch.setenv("OLLAMA_FLASH_ATTENTION", value)
        runner = LlamaRunner(GGUF, n_ctx=512, n_threads=1)
        runner.load()
        try:
            wanted = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if value == "1" else 0
            assert runner._llm.context_params.flash_attn_type == wanted
            prompt = runner.fit_prompt([{"role": "user", "content": "What colour is a duck?"}])
            options = GenerationOptions(temperature=0.0, num_predict=12)
            events = runner.generate(prompt, options)
            answers[value] = "".join(e.text for e in events if isinstance(e, Piece))
        finally:
            runner.close()
    # the same model, read with either attention kernel, starts its answer the same way
    assert answers["1"].split()[:2] == answers["0"].split()[:2] and len(answers["1"]) > 10
