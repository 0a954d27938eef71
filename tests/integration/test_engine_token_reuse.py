"""Prompt token reuse on the bundled SmolLM2's real llama.cpp tokenizer.

Every prompt an agent run sends (growing chats, tool schemas, tool results, user text that spells
special tokens, non-ASCII text) must get exactly the tokens a full tokenization gives, while the
prefix shared with the previous prompt is not tokenized again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ollagraph.agents.engine.llama_backend import LlamaRunner, token_piece
from ollagraph.agents.engine.registry import SMOLLM2, bundled_models

GGUF = next((m.source for m in bundled_models() if m.name == SMOLLM2), None)
pytestmark = pytest.mark.skipif(GGUF is None, reason="the bundled SmolLM2 is not installed")

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "sql_query",
            "description": "Run a read-only SQL query on the shop's DuckDB database.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "One SELECT."}},
                "required": ["query"],
            },
        },
    }
]


@pytest.fixture(scope="module")
def runner() -> Iterator[LlamaRunner]:
    assert GGUF is not None
    runner = LlamaRunner(GGUF, n_ctx=4096, n_threads=1)
    runner.load()
    yield runner
    runner.close()


def full(runner: LlamaRunner, prompt: str) -> list[int]:
    return list(runner._llm.tokenize(prompt.encode(), add_bos=False, special=True))


def test_an_agent_conversation_gets_the_tokens_of_a_full_tokenization(
    runner: LlamaRunner,
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You answer questions about Quackers & Co. ducks."},
        {"role": "user", "content": "How many ducks are yellow? Ünïcödé 🦆, tabs\tand  spaces"},
    ]
    reused_before = runner._tokens.reused_tokens if runner._tokens else 0
    for step in range(8):
        prompt = runner.render(messages, TOOLS)
        assert runner.tokenize(prompt) == full(runner, prompt)
        messages.append(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "function": {
                            "name": "sql_query",
                            "arguments": {"query": f"SELECT count(*) FROM ducks WHERE id > {step}"},
                        }
                    }
                ],
            }
        )
        # tool output and user text that spell special tokens and break words oddly
        messages.append({"role": "tool", "content": f"count\n{step * 7}<|im_end|>x"})
        messages.append({"role": "user", "content": f"and<|im_start|> then{step}?"})
    assert runner._tokens is not None and runner._tokens.enabled
    assert runner._tokens.reused_tokens > reused_before


def test_prompts_that_share_less_still_tokenize_right(runner: LlamaRunner) -> None:
    base = [{"role": "system", "content": "Be brief."}]
    prompts = [
        runner.render([*base, {"role": "user", "content": text}])
        for text in ("hello", "hello there", "hell", "héllo", "", "<|im_start|>", "a" * 500)
    ]
    prompts += [prompt[:cut] for prompt in prompts[:3] for cut in (5, 13, 20, 31)]
    for prompt in prompts + prompts[::-1]:
        assert runner.tokenize(prompt) == full(runner, prompt)
    assert runner._tokens is not None and runner._tokens.enabled


def test_token_pieces_spell_special_tokens_and_long_tokens(runner: LlamaRunner) -> None:
    vocab = runner._vocab
    im_start = full(runner, "<|im_start|>")
    assert len(im_start) == 1 and token_piece(vocab, im_start[0]) == b"<|im_start|>"
    spaces = full(runner, " " * 200)
    assert b"".join(token_piece(vocab, token) for token in spaces) == b" " * 200


def test_a_generated_token_longer_than_32_bytes_reaches_the_answer_whole(
    runner: LlamaRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama-cpp-python's `detokenize` gives b"" for such tokens (a newline and 32+ spaces)."""
    from ollagraph.agents.engine.llama_backend import Piece
    from ollagraph.agents.engine.protocol import GenerationOptions

    vocab = runner._vocab
    indent = full(runner, "x\n" + " " * 32)[1:]
    assert len(indent) == 1 and len(token_piece(vocab, indent[0])) == 33
    eos = runner._llm.token_eos()
    scripted = [*full(runner, "SELECT"), indent[0], *full(runner, "1"), eos]

    def generate(tokens: list[int], **_: Any) -> Iterator[int]:
        yield from scripted

    monkeypatch.setattr(runner._llm, "generate", generate)
    prompt = runner.tokenize(runner.render([{"role": "user", "content": "hi"}]))
    events = list(runner.generate(prompt, GenerationOptions(temperature=0.0)))
    text = "".join(e.text for e in events if isinstance(e, Piece))
    assert text == "SELECT\n" + " " * 32 + "1"
