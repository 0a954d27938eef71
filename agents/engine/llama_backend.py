"""GGUF chat models on llama.cpp (`llama-cpp-python`), the engine's main backend.

`LlamaRunner` owns one loaded model. It renders a chat with the model's own Jinja chat template
(from the GGUF, tools included when the template takes them), generates token by token with
Ollama's sampling options, enforces a `format` (`"json"` or a JSON schema) with llama.cpp's
grammar engine so the answer is always valid, honours stop texts, and counts tokens and time
the way Ollama reports them (`prompt_eval_count`, `eval_count`, durations).
LoRA adapters registered with the model (`lora`) are loaded into the same context with their
scales right after the weights.

llama.cpp is not thread-safe: the scheduler lets one request at a time use a runner, and each
runner generates on one thread of its own (`compute`), whichever connection asked.

`llama_cpp` is imported on first use, never when this module is imported.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ollagraph.agents.engine.compute import ComputeThread
from ollagraph.agents.engine.gguf import GGUFInfo, gguf_info
from ollagraph.agents.engine.llama_setup import (
    default_threads,
    flash_attention,
    llama_cpp_module,
    model_params,
    use_extra_buffers,
)
from ollagraph.agents.engine.lora import LoraAdapter, apply_adapters
from ollagraph.agents.engine.protocol import APIError, GenerationOptions, fit_chat
from ollagraph.agents.engine.registry import PLAIN_TEMPLATE
from ollagraph.agents.engine.templates import chat_template_for
from ollagraph.agents.engine.tokens import PrefixTokenizer

_LOAD_LOCK = threading.Lock()


@dataclass(frozen=True)
class Piece:
    """Generated text, ready to send."""

    text: str


@dataclass(frozen=True)
class Finished:
    """The end of a generation, with Ollama's counters.

    Attributes:
        done_reason: `stop` (end of turn, stop text or grammar complete) or `length`
            (`num_predict` reached or the context is full).
        prompt_eval_count: Tokens in the prompt.
        prompt_eval_duration: Seconds spent reading the prompt (until the first token).
        eval_count: Tokens generated.
        eval_duration: Seconds spent generating after the first token.
    """

    done_reason: str
    prompt_eval_count: int
    prompt_eval_duration: float
    eval_count: int
    eval_duration: float


# llama-cpp-python's schema converter lets raw control characters (newlines) into strings,
# which makes invalid JSON; llama.cpp's own converter (what Ollama uses) excludes them.
_CHAR_RULE = re.compile(r"^char ::= .*$", re.MULTILINE)
_STRICT_CHAR_RULE = (
    r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] '
    r"[0-9a-fA-F] [0-9a-fA-F])"
)


@lru_cache(maxsize=64)
def _grammar_text(format_json: str) -> str:
    """Convert a `format` value (JSON text) to GBNF grammar text."""
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    value = json.loads(format_json)
    if value == "json":
        return str(JSON_GBNF)
    grammar = str(json_schema_to_gbnf(format_json))
    return _CHAR_RULE.sub(lambda _: _STRICT_CHAR_RULE, grammar)


def build_grammar(format_value: Any) -> Any:
    """Turn a request's `format` into a llama.cpp grammar (None when there is no format).

    Args:
        format_value: `"json"`, a JSON schema object, or None / `""` for free text.

    Raises:
        APIError: The format is neither `json` nor a schema the converter understands (400).
    """
    if format_value in (None, ""):
        return None
    if not (format_value == "json" or isinstance(format_value, Mapping)):
        raise APIError(400, f'invalid format {format_value!r}: use "json" or a JSON schema')
    llama_cpp_module()
    from llama_cpp.llama_grammar import LlamaGrammar

    try:
        text = _grammar_text(json.dumps(format_value))  # keep property order
    except Exception as exc:  # the converter raises assorted errors on unsupported schemas
        raise APIError(400, f"invalid JSON schema in format: {exc}") from None
    return LlamaGrammar.from_string(text, verbose=False)


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Convert Ollama chat messages to the shape Hugging Face chat templates expect.

    Tool calls become `{"type": "function", "function": {"name", "arguments"}}` with the
    arguments as an object; a tool result keeps `tool_name` as `name`.
    """
    converted: list[dict[str, Any]] = []
    for message in messages:
        item: dict[str, Any] = {
            "role": str(message.get("role") or "user"),
            "content": str(message.get("content") or ""),
        }
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            item["tool_calls"] = [
                {
                    "type": "function",
                    "function": {
                        "name": (call.get("function") or {}).get("name", ""),
                        "arguments": (call.get("function") or {}).get("arguments") or {},
                    },
                }
                for call in calls
                if isinstance(call, Mapping)
            ]
        if message.get("tool_name"):
            item["name"] = message["tool_name"]
        converted.append(item)
    return converted


class LlamaRunner:
    """One GGUF model loaded in llama.cpp.

    Attributes:
        path: The GGUF file.
        adapters: LoRA adapters applied on top of it, with their scales.
        n_ctx: Context window the model was loaded with.
        n_threads: CPU threads used.
        load_seconds: How long the last load took.
        info: The GGUF header (architecture, template, tokens).
        last_prompt: The text of the last prompt rendered (what the model was shown), for
            debugging and tests.
    """

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        n_threads: int = 0,
        adapters: Sequence[LoraAdapter] = (),
    ) -> None:
        self.path = path
        self.adapters = tuple(adapters)
        self.info: GGUFInfo = gguf_info(path)
        train_ctx = self.info.context_length
        self.n_ctx = min(n_ctx, train_ctx) if train_ctx else n_ctx
        self.n_threads = n_threads or default_threads()
        self.load_seconds = 0.0
        self._llm: Any = None
        self._formatter: Any = None
        self._stop_ids: set[int] = set()
        self._compute: ComputeThread | None = None
        self._tokens: PrefixTokenizer | None = None
        self._pieces: dict[int, bytes] = {}  # token -> the bytes it adds to an answer
        self._bos_text = ""
        self.last_prompt = ""

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._llm is not None

    @property
    def memory_bytes(self) -> int:
        """Approximate resident size: the weights plus the KV cache for `n_ctx` tokens."""
        meta = self.info.metadata
        arch = self.info.architecture
        layers = int(meta.get(f"{arch}.block_count") or 0)
        heads = int(meta.get(f"{arch}.attention.head_count") or 1)
        kv_heads = int(meta.get(f"{arch}.attention.head_count_kv") or heads)
        width = int(meta.get(f"{arch}.embedding_length") or 0)
        kv_bytes = 2 * layers * kv_heads * (width // max(heads, 1)) * 2 * self.n_ctx
        adapter_bytes = sum(
            adapter.path.stat().st_size for adapter in self.adapters if adapter.path.exists()
        )
        return self.path.stat().st_size + adapter_bytes + kv_bytes

    def load(self) -> float:
        """Load the weights (if not loaded) and return the seconds it took."""
        if self._llm is not None:
            return 0.0
        llama_cpp = llama_cpp_module()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        started = time.perf_counter()
        with _LOAD_LOCK, model_params(use_extra_buffers()):
            try:
                llm = llama_cpp.Llama(
                    model_path=str(self.path),
                    n_ctx=self.n_ctx,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    flash_attn=flash_attention(),
                    seed=random.randint(0, 2**31 - 1),
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise APIError(500, f"llama runner failed to load {self.path}: {exc}") from None
            try:
                apply_adapters(llm, self.adapters)
            except RuntimeError as exc:
                llm.close()
                raise APIError(500, str(exc)) from None
        vocab = llm._model.vocab
        eos = llm.token_eos()
        bos = llm.token_bos()

        def token_text(token: int) -> str:
            return token_piece(vocab, token).decode("utf-8", "replace") if token >= 0 else ""

        bos_text = token_text(bos)
        template = chat_template_for(self.info) or PLAIN_TEMPLATE
        self._formatter = Jinja2ChatFormatter(
            template=template, eos_token=token_text(eos), bos_token=bos_text
        )
        stop_ids = {eos} if eos >= 0 else set()
        for text in ("<|im_start|>", "<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
            if text in template:
                tokens = llm.tokenize(text.encode(), add_bos=False, special=True)
                if len(tokens) == 1:
                    stop_ids.add(tokens[0])
        self._stop_ids = stop_ids
        self._vocab = vocab
        self._bos_text = bos_text
        self._tokens = _prefix_tokenizer(llm, vocab)
        self._llm = llm
        self.load_seconds = time.perf_counter() - started
        return self.load_seconds

    def close(self) -> None:
        """Free the model and its context (after any generation in progress)."""
        llm, self._llm = self._llm, None
        compute, self._compute = self._compute, None
        self._tokens = None
        if llm is not None:
            with contextlib.suppress(Exception):
                if compute is not None:
                    compute.call(llm.close)
                else:
                    llm.close()
        if compute is not None:
            compute.stop()

    # -- prompting ----------------------------------------------------------------------------

    def render(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] = ()
    ) -> str:
        """Render a chat with the model's chat template, ending with the assistant's turn.

        Raises:
            APIError: The template rejects the messages (HTTP 500, as Ollama's template errors).
        """
        self.load()
        try:
            result = self._formatter(
                messages=template_messages(messages), tools=list(tools) or None
            )
        except Exception as exc:  # jinja raises TemplateError / ValueError from the template
            raise APIError(500, f"template error: {exc}") from None
        self.last_prompt = str(result.prompt)
        return self.last_prompt

    def tokenize(self, prompt: str) -> list[int]:
        """Tokenize a rendered prompt (special tokens parsed; BOS added only when needed)."""
        self.load()
        add_bos = bool(self.info.metadata.get("tokenizer.ggml.add_bos_token", False))
        if add_bos and self._bos_text:
            add_bos = not prompt.startswith(self._bos_text)
        assert self._tokens is not None
        return self._tokens(prompt.encode("utf-8"), add_bos)

    def context_limit(self, num_ctx: int) -> int:
        """The context window a request gets: its `num_ctx`, within what is loaded."""
        return max(1, min(num_ctx, self.n_ctx))

    def fit_prompt(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] = (),
        *,
        num_ctx: int | None = None,
    ) -> list[int]:
        """Render and tokenize a chat, dropping the oldest turns if it overflows the context.

        System messages and the last message are always kept, as Ollama does.

        Args:
            messages: The chat.
            tools: Tool definitions for templates that take them.
            num_ctx: The request's context window (default: the loaded one).

        Raises:
            APIError: Even the shortest form is longer than the context window (400).
        """
        return fit_chat(
            messages,
            tools,
            self.context_limit(num_ctx or self.n_ctx),
            render=self.render,
            tokenize=self.tokenize,
        )

    # -- generating ---------------------------------------------------------------------------

    def generate(
        self,
        prompt_tokens: list[int],
        options: GenerationOptions,
        grammar: Any = None,
    ) -> Iterator[Piece | Finished]:
        """Generate an answer, yielding text pieces and, last, the counters.

        The generation runs on this model's compute thread (`compute.ComputeThread`), whatever
        thread iterates; closing the iterator stops it.

        Args:
            prompt_tokens: The tokenized prompt (`fit_prompt`).
            options: Sampling options (temperature, top_k, top_p, seed, num_predict, stop...).
            grammar: A grammar from `build_grammar`, or None.
        """
        self.load()
        return self._compute_thread().stream(
            lambda: self._generate(prompt_tokens, options, grammar)
        )

    def _compute_thread(self) -> ComputeThread:
        with _LOAD_LOCK:
            if self._compute is None:
                self._compute = ComputeThread(f"llama-{self.path.stem[:20]}")
            return self._compute

    def _generate(
        self,
        prompt_tokens: list[int],
        options: GenerationOptions,
        grammar: Any = None,
    ) -> Iterator[Piece | Finished]:
        self.load()
        llama_cpp = llama_cpp_module()
        llm = self._llm
        seed = options.seed if options.seed >= 0 else random.randint(0, 2**31 - 1)
        llm.set_seed(seed)
        stops = [s for s in options.stop if s]
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        started = time.perf_counter()
        first_token_at: float | None = None
        generated: list[int] = []
        pending = ""
        reason = "length"
        hit = False
        limit = options.num_predict if options.num_predict > 0 else None
        context = self.context_limit(options.num_ctx)
        pieces = self._pieces
        if options.seed >= 0 and options.temperature > 0:
            _settle_prefix(llm, prompt_tokens)
        tokens = llm.generate(
            prompt_tokens,
            top_k=options.top_k,
            top_p=options.top_p,
            min_p=options.min_p,
            typical_p=options.typical_p,
            temp=options.temperature,
            repeat_penalty=options.repeat_penalty,
            frequency_penalty=options.frequency_penalty,
            presence_penalty=options.presence_penalty,
            mirostat_mode=options.mirostat,
            mirostat_tau=options.mirostat_tau,
            mirostat_eta=options.mirostat_eta,
            grammar=grammar,
        )
        try:
            for token in tokens:
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                generated.append(token)
                if token in self._stop_ids or llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    reason = "stop"
                    break
                raw = pieces.get(token)
                if raw is None:
                    raw = pieces[token] = token_piece(self._vocab, token, special=False)
                pending += decoder.decode(raw)
                out, pending, hit = _split_stop(pending, stops)
                if out:
                    yield Piece(out)
                if hit:
                    reason = "stop"
                    break
                if limit is not None and len(generated) >= limit:
                    break
                if len(prompt_tokens) + len(generated) + 1 >= context:
                    break
        finally:
            tokens.close()
        if not hit:
            pending += decoder.decode(b"", final=True)
            if pending:
                yield Piece(pending)
        ended = time.perf_counter()
        first = first_token_at or ended
        yield Finished(
            done_reason=reason,
            prompt_eval_count=len(prompt_tokens),
            prompt_eval_duration=first - started,
            eval_count=len(generated),
            eval_duration=ended - first,
        )


def _settle_prefix(llm: Any, prompt_tokens: list[int]) -> None:
    """Evaluate all of the prompt but its last token, which `generate` then evaluates alone.

    A prompt that llama.cpp finds cached gets its last token evaluated alone, while a new prompt
    is evaluated in one batch; the two give logits that differ in the last bits, and sampling
    at a temperature can then pick another first token. A request that samples with a seed
    asks for the same answer every time, so its last prompt token is always evaluated alone
    (one extra forward pass when the prompt is new; greedy requests need no seed and skip it).
    """
    head = prompt_tokens[:-1]
    if not head:
        return
    import numpy as np

    known = np.asarray(llm.input_ids)[: len(head)]
    differs = np.flatnonzero(known != np.asarray(head[: len(known)], dtype=known.dtype))
    common = int(differs[0]) if differs.size else len(known)
    llm.n_tokens = common
    if common < len(head):
        llm.eval(head[common:])


def _prefix_tokenizer(llm: Any, vocab: Any) -> PrefixTokenizer:
    """A tokenizer for `llm` that reuses the tokens of recent prompts' prefixes (`tokens`)."""
    llama_cpp = llama_cpp_module()
    splits = (
        llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
        | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
        | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
    )

    def tokenize(text: bytes, add_bos: bool) -> list[int]:
        return list(llm.tokenize(text, add_bos=add_bos, special=True))

    def is_special(token: int) -> bool:
        return bool(llama_cpp.llama_vocab_get_attr(vocab, token) & splits)

    return PrefixTokenizer(tokenize, lambda token: token_piece(vocab, token), is_special)


def token_piece(vocab: Any, token: int, *, special: bool = True) -> bytes:
    """The bytes of one token, however long.

    llama-cpp-python's `detokenize` gives nothing for tokens over 32 bytes (SmolLM2 has 47:
    a newline and 32 or more spaces, common in indented code), so answers lost them.

    Args:
        vocab: The model's llama.cpp vocabulary.
        token: The token.
        special: Spell out control tokens (`<|im_end|>`); without it they are empty, as in
            an answer's text.
    """
    import ctypes

    llama_cpp = llama_cpp_module()
    size = 64
    while True:
        buffer = ctypes.create_string_buffer(size)
        written = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, special)
        if written < 0:  # the buffer was too small: -written bytes are needed
            size = -written
            continue
        return bytes(buffer.raw[:written])


def _split_stop(text: str, stops: Sequence[str]) -> tuple[str, str, bool]:
    """Split pending text at stop strings.

    Returns:
        (text safe to emit, text to hold back because it may start a stop string, whether a
        stop string was found — the text from it on is dropped).
    """
    if not stops:
        return text, "", False
    found = [text.find(stop) for stop in stops if stop in text]
    if found:
        return text[: min(found)], "", True
    hold = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                hold = max(hold, size)
                break
    return text[: len(text) - hold], text[len(text) - hold :], False


__all__ = [
    "Finished",
    "LlamaRunner",
    "Piece",
    "build_grammar",
    "default_threads",
    "template_messages",
    "use_extra_buffers",
]
