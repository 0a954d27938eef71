"""Hugging Face checkpoints on transformers + torch, the engine's second chat backend.

`HFRunner` has the surface of `LlamaRunner` (`load`, `close`, `fit_prompt`, `tokenize`,
`context_limit`, `generate` yielding `Piece`s then a `Finished`), so the handlers serve a
folder with `config.json`, weights and a tokenizer exactly like a GGUF file:

- the prompt is rendered by the tokenizer's own chat template (`apply_chat_template`, tools
  passed when the template uses them; tool calls are parsed later by `toolcalls`);
- generation is a manual decode loop with a KV cache and Ollama's sampling options
  (temperature, top_k, top_p, min_p, repeat/presence/frequency penalties, seed, stop texts,
  `num_predict`);
- a `format` (`"json"` or a JSON schema) is enforced by constrained decoding with xgrammar:
  before each token, the logits of every token the grammar forbids are masked out, so the
  answer is valid even from a model that knows nothing;
- device and precision come from `device.py` (`$OLLAGRAPH_DEVICE`, `$OLLAGRAPH_PRECISION`).

torch, transformers and xgrammar are imported on first use, never when this module is imported.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollagraph.agents.engine.device import describe, resolve_device, resolve_dtype
from ollagraph.agents.engine.hf_facts import read_config
from ollagraph.agents.engine.llama_backend import Finished, Piece, _split_stop, template_messages
from ollagraph.agents.engine.protocol import APIError, GenerationOptions, fit_chat
from ollagraph.agents.engine.registry import PLAIN_TEMPLATE

_END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")
_REPEAT_LAST_N = 64  # Ollama's repeat_last_n default


@dataclass(frozen=True)
class FormatRequest:
    """A validated `format`: `"json"` (any JSON object) or a JSON schema, as JSON text.

    Attributes:
        text: `"json"` or the schema serialized with its key order kept.
    """

    text: str

    @property
    def is_schema(self) -> bool:
        """Whether this is a JSON schema rather than plain JSON."""
        return self.text != '"json"'


def build_format(format_value: Any) -> FormatRequest | None:
    """Check a request's `format` for the HF backend (compiled later, by the runner).

    Args:
        format_value: `"json"`, a JSON schema object, or None / `""` for free text.

    Raises:
        APIError: The format is neither `json` nor an object (400).
    """
    if format_value in (None, ""):
        return None
    if not (format_value == "json" or isinstance(format_value, Mapping)):
        raise APIError(400, f'invalid format {format_value!r}: use "json" or a JSON schema')
    return FormatRequest(json.dumps(format_value))


def _imports() -> tuple[Any, Any]:
    """Import torch and transformers, with a clear error if they are missing."""
    try:
        import torch
        import transformers
    except ImportError:
        raise APIError(
            500,
            "transformers and torch are needed for Hugging Face models "
            "(pip install transformers torch)",
        ) from None
    return torch, transformers


def _xgrammar() -> Any:
    try:
        import xgrammar
    except ImportError:
        raise APIError(
            500, "xgrammar is needed for `format` on Hugging Face models (pip install xgrammar)"
        ) from None
    return xgrammar


class HFRunner:
    """One Hugging Face checkpoint loaded with transformers.

    Attributes:
        path: The checkpoint folder.
        n_ctx: Context window in tokens (the request's, within `max_position_embeddings`).
        n_threads: CPU threads torch may use (0: torch's default).
        load_seconds: How long the last load took.
        device: The torch device the weights are on (after `load`).
        dtype_note: Why the precision differs from the one asked for (or empty).
        compile_seconds: Time spent compiling the last new `format` grammar.
    """

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int = 0) -> None:
        self.path = path
        self.config = read_config(path)
        train_ctx = int(self.config.get("max_position_embeddings") or 0)
        self.train_ctx = train_ctx
        self.n_ctx = min(n_ctx, train_ctx) if train_ctx else n_ctx
        self.n_threads = n_threads
        self.load_seconds = 0.0
        self.device = ""
        self.dtype: Any = None
        self.dtype_note = ""
        self.compile_seconds = 0.0
        self._model: Any = None
        self._tokenizer: Any = None
        self._stop_ids: set[int] = set()
        self._vocab_size = 0
        self._compiler: Any = None
        self._grammars: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.last_prompt = ""

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._model is not None

    @property
    def memory_bytes(self) -> int:
        """Approximate resident size: the weights plus the KV cache for `n_ctx` tokens."""
        if self._model is None:
            return 0
        weights = sum(p.numel() * p.element_size() for p in self._model.parameters())
        config = self.config
        layers = int(config.get("num_hidden_layers") or 0)
        heads = int(config.get("num_attention_heads") or 1)
        kv_heads = int(config.get("num_key_value_heads") or heads)
        width = int(config.get("hidden_size") or 0)
        element = int(self.dtype.itemsize) if self.dtype is not None else 4
        kv = 2 * layers * kv_heads * (width // max(heads, 1)) * element * self.n_ctx
        return int(weights + kv)

    @property
    def label(self) -> str:
        """Device and precision, e.g. `cpu fp32`."""
        return describe(self.device, self.dtype) if self.device else ""

    def load(self) -> float:
        """Load the tokenizer and weights (if not loaded) and return the seconds it took.

        Raises:
            APIError: The device or precision setting is invalid, or the checkpoint cannot be
                loaded (500).
        """
        if self._model is not None:
            return 0.0
        torch, transformers = _imports()
        started = time.perf_counter()
        try:
            device = resolve_device()
            dtype, note = resolve_dtype(device)
        except ValueError as exc:
            raise APIError(500, str(exc)) from None
        if self.n_threads > 0:
            torch.set_num_threads(self.n_threads)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(self.path), local_files_only=True
            )
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(self.path), dtype=dtype, local_files_only=True
            )
        except (OSError, ValueError, KeyError) as exc:
            raise APIError(500, f"failed to load {self.path}: {exc}") from None
        model.to(device)
        model.eval()
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = PLAIN_TEMPLATE
        self._stop_ids = self._find_stop_ids(model, tokenizer)
        self._vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self._tokenizer = tokenizer
        self._model = model
        self.device, self.dtype, self.dtype_note = device, dtype, note
        self.load_seconds = time.perf_counter() - started
        return self.load_seconds

    @staticmethod
    def _find_stop_ids(model: Any, tokenizer: Any) -> set[int]:
        """End-of-turn tokens: EOS (tokenizer and generation config) and the template's."""
        ids: set[int] = set()
        for source in (
            tokenizer.eos_token_id,
            getattr(model.generation_config, "eos_token_id", None),
        ):
            if isinstance(source, int):
                ids.add(source)
            elif isinstance(source, list):
                ids.update(int(i) for i in source)
        template = str(getattr(tokenizer, "chat_template", "") or "")
        vocab = tokenizer.get_vocab()
        for text in _END_OF_TURN:
            if text in template and text in vocab:
                ids.add(int(vocab[text]))
        return ids

    def close(self) -> None:
        """Free the model (and the GPU memory it held)."""
        self._model = None
        self._grammars.clear()
        if self.device.startswith("cuda"):
            torch, _ = _imports()
            torch.cuda.empty_cache()

    # -- prompting ----------------------------------------------------------------------------

    def render(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] = ()
    ) -> str:
        """Render a chat with the tokenizer's chat template, ending with the assistant's turn.

        Raises:
            APIError: The template rejects the messages (500).
        """
        self.load()
        try:
            text = self._tokenizer.apply_chat_template(
                template_messages(messages),
                tools=list(tools) or None,
                add_generation_prompt=True,
                tokenize=False,
            )
        except Exception as exc:  # jinja raises TemplateError / ValueError from the template
            raise APIError(500, f"template error: {exc}") from None
        self.last_prompt = str(text)
        return self.last_prompt

    def tokenize(self, prompt: str) -> list[int]:
        """Tokenize a rendered prompt (special tokens parsed; BOS added only when missing)."""
        self.load()
        tokenizer = self._tokenizer
        ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        bos = tokenizer.bos_token_id
        wants_bos = bool(getattr(tokenizer, "add_bos_token", False))
        if wants_bos and isinstance(bos, int) and (not ids or ids[0] != bos):
            ids.insert(0, bos)
        return ids

    def context_limit(self, num_ctx: int) -> int:
        """The context window a request gets: its `num_ctx`, within the model's."""
        limit = min(num_ctx, self.train_ctx) if self.train_ctx else num_ctx
        return max(1, limit)

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

    # -- constrained decoding -----------------------------------------------------------------

    def compiled_grammar(self, request: FormatRequest) -> Any:
        """Compile (once per runner and format) the xgrammar grammar of a `format`.

        Raises:
            APIError: The schema cannot be compiled (400).
        """
        self.load()
        cached = self._grammars.get(request.text)
        if cached is not None:
            return cached
        xgr = _xgrammar()
        started = time.perf_counter()
        with self._lock:
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(
                    self._tokenizer,
                    vocab_size=self._vocab_size,
                    stop_token_ids=sorted(self._stop_ids) or None,
                )
                self._compiler = xgr.GrammarCompiler(info, max_threads=2)
            try:
                if request.is_schema:
                    compiled = self._compiler.compile_json_schema(
                        request.text, any_whitespace=False, strict_mode=True
                    )
                else:  # "json" means an object, as in Ollama (llama.cpp's JSON grammar)
                    compiled = self._compiler.compile_json_schema(
                        '{"type": "object"}', any_whitespace=False, strict_mode=False
                    )
            except Exception as exc:  # xgrammar raises RuntimeError / InvalidJSONError
                raise APIError(400, f"invalid JSON schema in format: {exc}") from None
        self.compile_seconds = time.perf_counter() - started
        self._grammars[request.text] = compiled
        return compiled

    # -- generating ---------------------------------------------------------------------------

    def generate(
        self,
        prompt_tokens: list[int],
        options: GenerationOptions,
        grammar: Any = None,
    ) -> Iterator[Piece | Finished]:
        """Generate an answer, yielding text pieces and, last, the counters.

        Args:
            prompt_tokens: The tokenized prompt (`fit_prompt`).
            options: Sampling options (temperature, top_k, top_p, seed, num_predict, stop...).
            grammar: A `FormatRequest` from `build_format`, or None for free text.
        """
        self.load()
        torch, _ = _imports()
        matcher: Any = None
        bitmask: Any = None
        xgr: Any = None
        if isinstance(grammar, FormatRequest):
            xgr = _xgrammar()
            matcher = xgr.GrammarMatcher(self.compiled_grammar(grammar))
            bitmask = xgr.allocate_token_bitmask(1, self._vocab_size)
        seed = options.seed if options.seed >= 0 else random.randint(0, 2**31 - 1)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        stops = [s for s in options.stop if s]
        limit = options.num_predict if options.num_predict > 0 else None
        context = self.context_limit(options.num_ctx)
        model = self._model
        started = time.perf_counter()
        first_token_at: float | None = None
        generated: list[int] = []
        emitted = ""
        pending = ""
        reason = "length"
        hit = matcher_done = False
        with torch.inference_mode():
            inputs = torch.tensor([prompt_tokens], device=self.device)
            output = model(input_ids=inputs, use_cache=True)
            while True:
                logits = output.logits[0, -1].float().cpu()
                if matcher is not None:
                    matcher.fill_next_token_bitmask(bitmask)
                    xgr.apply_token_bitmask_inplace(logits.unsqueeze(0), bitmask)
                token = _sample(torch, logits, prompt_tokens + generated, options, generator)
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                generated.append(token)
                if token in self._stop_ids:
                    reason = "stop"
                    break
                if matcher is not None:
                    matcher.accept_token(token)
                text = self._tokenizer.decode(generated, skip_special_tokens=False)
                if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for more
                    new = ""
                else:
                    new, emitted = text[len(emitted) :], text
                pending += new
                out, pending, hit = _split_stop(pending, stops)
                if out:
                    yield Piece(out)
                matcher_done = matcher is not None and matcher.is_terminated()
                if hit or matcher_done:
                    reason = "stop"
                    break
                if limit is not None and len(generated) >= limit:
                    break
                if len(prompt_tokens) + len(generated) + 1 >= context:
                    break
                step = torch.tensor([[token]], device=self.device)
                output = model(
                    input_ids=step, past_key_values=output.past_key_values, use_cache=True
                )
        if not hit:
            answer = generated[:-1] if reason == "stop" and not matcher_done else generated
            text = self._tokenizer.decode(answer, skip_special_tokens=False)
            pending += text[len(emitted) :] if text.startswith(emitted) else ""
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


def _sample(
    torch: Any,
    logits: Any,
    history: Sequence[int],
    options: GenerationOptions,
    generator: Any,
) -> int:
    """Pick the next token from (masked) logits with Ollama's sampling options."""
    recent = list(history[-_REPEAT_LAST_N:])
    if recent and (
        options.repeat_penalty != 1.0
        or options.presence_penalty != 0.0
        or options.frequency_penalty != 0.0
    ):
        ids = torch.tensor(recent, dtype=torch.long)
        unique, counts = torch.unique(ids, return_counts=True)
        values = logits[unique]
        if options.repeat_penalty != 1.0:
            penalty = options.repeat_penalty
            values = torch.where(values > 0, values / penalty, values * penalty)
        values = values - options.frequency_penalty * counts - options.presence_penalty
        logits[unique] = values
    if options.temperature <= 0:
        return int(torch.argmax(logits).item())
    logits = logits / options.temperature
    if options.top_k > 0 and options.top_k < logits.shape[-1]:
        threshold = torch.topk(logits, options.top_k).values[-1]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if 0.0 < options.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        drop = cumulative - sorted_probs > options.top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    if options.min_p > 0.0:
        probs = probs.masked_fill(probs < options.min_p * probs.max(), 0.0)
    if float(probs.sum()) <= 0.0:  # everything filtered out: fall back to the best token
        return int(torch.argmax(logits).item())
    return int(torch.multinomial(probs, 1, generator=generator).item())


__all__ = ["FormatRequest", "HFRunner", "build_format"]
