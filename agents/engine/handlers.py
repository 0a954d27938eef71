"""The Ollama API's semantics, independent of HTTP: one method per endpoint.

Each method takes the decoded JSON body and returns a `JSONResponse`, a `TextResponse` or a
`StreamResponse` (NDJSON parts); failures raise `APIError` with Ollama's status and message.
What a streamed endpoint yields first is computed before the server sends any header, so an
error that happens before the first part (unknown model, load failure, context overflow) is
still an HTTP error status, as with Ollama; a later one becomes an `{"error": ...}` line.

Faithful to Ollama (`server/routes.go`):

- unknown model: chat and embed answer 404 `model "x" not found, try pulling it first`;
  show, generate and delete answer 404 `model 'x' not found`;
- a bundled model that was not pulled yet counts as unknown (the client pulls it);
- `tools` to a model whose template has no tools: 400 `registry.ollama.ai/library/x does not
  support tools`; `think` to a model that cannot think: 400 `"x" does not support thinking`;
- empty `messages` loads the model (`done_reason: "load"`), and with `keep_alive: 0` unloads it
  (`done_reason: "unload"`);
- pull of anything but a bundled model: `pulling manifest`, then `pull model manifest: file
  does not exist` (an error line when streaming; HTTP 500 when not).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollagraph.agents import __version__
from ollagraph.agents.engine.embed_backend import MiniLMRunner
from ollagraph.agents.engine.gguf import GGUFError
from ollagraph.agents.engine.hf_backend import HFRunner, build_format
from ollagraph.agents.engine.llama_backend import Finished, LlamaRunner, build_grammar
from ollagraph.agents.engine.protocol import (
    APIError,
    GenerationOptions,
    expiry_timestamp,
    local_timestamp,
    nanoseconds,
    parse_keep_alive,
    utc_timestamp,
)
from ollagraph.agents.engine.registry import (
    KIND_HF,
    ModelFacts,
    Registry,
    is_valid_name,
    model_facts,
    qualified_name,
)
from ollagraph.agents.engine.scheduler import Scheduler
from ollagraph.agents.engine.store import PresentModel, Store
from ollagraph.agents.engine.toolcalls import ToolCallStream

ENGINE_VERSION = f"{__version__}-ollagraph"

logger = logging.getLogger("ollagraph.engine")


@dataclass(frozen=True)
class JSONResponse:
    """One JSON object (or no body when `body` is None)."""

    status: int
    body: Any


@dataclass(frozen=True)
class TextResponse:
    """A plain-text answer (`Ollama is running`)."""

    status: int
    text: str


@dataclass(frozen=True)
class StreamResponse:
    """Newline-delimited JSON objects, sent as they are produced.

    Attributes:
        parts: The objects, produced lazily (the first one before any header is sent).
        collect: For `"stream": false`: fold the parts into one object (`collect(parts,
            field)`) and send that; the server stops early if the client goes away.
    """

    parts: Generator[dict[str, Any], None, None]
    collect: str | None = None


Response = JSONResponse | TextResponse | StreamResponse


def _object(body: Any) -> Mapping[str, Any]:
    if body is None:
        raise APIError(400, "missing request body")
    if not isinstance(body, Mapping):
        raise APIError(400, "request body must be a JSON object")
    return body


def _model_name(body: Mapping[str, Any]) -> str:
    name = body.get("model") or body.get("name") or ""
    if not isinstance(name, str) or not name.strip():
        raise APIError(400, "model is required")
    return name


def _messages(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    messages = body.get("messages") or []
    if not isinstance(messages, list) or not all(
        isinstance(m, Mapping) and isinstance(m.get("role", ""), str) for m in messages
    ):
        raise APIError(400, "messages must be a list of objects with a role and content")
    return list(messages)


def _tools(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tools = body.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, Mapping) for t in tools):
        raise APIError(400, "tools must be a list of objects")
    return list(tools)


def _tool_names(tools: Sequence[Mapping[str, Any]]) -> set[str]:
    names = set()
    for tool in tools:
        function = tool.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names


def _wants_thinking(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.lower() in ("low", "medium", "high", "true")


class OllamaAPI:
    """The engine's endpoints.

    Attributes:
        store: Pulled and registered models.
        scheduler: Loaded models.
    """

    def __init__(self, models_dir: Path) -> None:
        self.store = Store(models_dir, Registry(models_dir))
        self.scheduler = Scheduler()

    @property
    def registry(self) -> Registry:
        """The known models."""
        return self.store.registry

    # -- helpers ------------------------------------------------------------------------------

    def _present(self, name: str, message: str) -> PresentModel:
        model = self.store.present(name) if is_valid_name(name) else None
        if model is None:
            raise APIError(404, message)
        return model

    @staticmethod
    def _facts(model: PresentModel) -> ModelFacts:
        try:
            return model_facts(model.spec)
        except GGUFError as exc:
            raise APIError(500, str(exc)) from None

    def _entry(self, model: PresentModel) -> dict[str, Any]:
        return {
            "name": model.name,
            "model": model.name,
            "modified_at": local_timestamp(model.modified_at),
            "size": model.size,
            "digest": model.digest,
            "details": self._facts(model).details(),
        }

    # -- general ------------------------------------------------------------------------------

    def root(self) -> Response:
        """`GET /`."""
        return TextResponse(200, "Ollama is running")

    def version(self) -> Response:
        """`GET /api/version`."""
        return JSONResponse(200, {"version": ENGINE_VERSION})

    def tags(self) -> Response:
        """`GET /api/tags`: the present models."""
        return JSONResponse(200, {"models": [self._entry(m) for m in self.store.list_present()]})

    def ps(self) -> Response:
        """`GET /api/ps`: the loaded models."""
        models = []
        for running in self.scheduler.running():
            entry = self._entry(running.model)
            del entry["modified_at"]
            entry.update(
                size=running.size,
                expires_at=expiry_timestamp(running.expires_at),
                size_vram=0,
                context_length=running.context_length,
            )
            models.append(entry)
        return JSONResponse(200, {"models": models})

    def show(self, body: Any) -> Response:
        """`POST /api/show`: template, parameters, details, model_info, capabilities."""
        name = _model_name(_object(body))
        model = self._present(name, f"model '{name}' not found")
        facts = self._facts(model)
        parameters = "\n".join(f"{'stop':<30} {json.dumps(s)}" for s in facts.stop)
        lines = [
            '# Modelfile generated by "ollama show"',
            "# To build a new Modelfile based on this, replace FROM with:",
            f"# FROM {model.name}",
            "",
            f"FROM {model.weights}",
        ]
        for adapter in model.spec.adapters:  # Ollama's Modelfile has no scale: a comment
            lines += [
                f"# LoRA adapter, scale {adapter.scale:g}, sha256:{adapter.sha256}",
                f"ADAPTER {adapter.path}",
            ]
        if facts.template:
            lines.append(f'TEMPLATE """{facts.template}"""')
        lines += [f"PARAMETER stop {s}" for s in facts.stop]
        if facts.license:
            lines.append(f'LICENSE """{facts.license}"""')
        payload: dict[str, Any] = {
            "modelfile": "\n".join(lines) + "\n",
            "parameters": parameters,
            "template": facts.template,
            "details": facts.details(),
            "model_info": facts.model_info,
            "capabilities": list(facts.capabilities),
            "modified_at": local_timestamp(model.modified_at),
        }
        if facts.license:
            payload["license"] = facts.license
        if model.spec.adapters:  # an ollagraph field; Ollama only has the ADAPTER lines
            payload["adapters"] = [
                {
                    "path": str(adapter.path),
                    "scale": adapter.scale,
                    "digest": f"sha256:{adapter.sha256}",
                    "type": "lora",
                }
                for adapter in model.spec.adapters
            ]
        return JSONResponse(200, payload)

    def pull(self, body: Any) -> Response:
        """`POST /api/pull`: copy a bundled model into the store, with progress."""
        request = _object(body)
        name = _model_name(request)
        if not is_valid_name(name):
            raise APIError(400, "invalid model name")
        parts = self.store.pull(name)
        return StreamResponse(parts, None if request.get("stream") is not False else "status")

    def delete(self, body: Any) -> Response:
        """`DELETE /api/delete`: remove a pulled model, or unregister a user model."""
        name = _model_name(_object(body))
        model = self.store.present(name) if is_valid_name(name) else None
        if model is None:
            raise APIError(404, f"model '{name}' not found")
        self.scheduler.unload(model.name)
        self.store.delete(model.name)
        return JSONResponse(200, None)

    # -- chat ---------------------------------------------------------------------------------

    def chat(self, body: Any) -> Response:
        """`POST /api/chat`: the next assistant message, streamed or in one object."""
        started = time.perf_counter()
        request = _object(body)
        name = _model_name(request)
        messages = _messages(request)
        keep_alive = parse_keep_alive(request.get("keep_alive"))
        model = self._present(name, f'model "{name}" not found, try pulling it first')
        if not messages and keep_alive == 0:
            self.scheduler.unload(model.name)
            return JSONResponse(200, self._unloaded(name, "message"))
        facts = self._facts(model)
        if "completion" not in facts.capabilities:
            raise APIError(400, f'"{name}" does not support chat')
        tools = _tools(request)
        if tools and "tools" not in facts.capabilities:
            raise APIError(400, f"{qualified_name(name)} does not support tools")
        if _wants_thinking(request.get("think")):
            raise APIError(400, f'"{name}" does not support thinking')
        options = GenerationOptions.from_request(request.get("options"))
        grammar = _format_for(model, request.get("format"))
        parts = self._chat_parts(
            name, model, messages, tools, options, grammar, keep_alive, started
        )
        return StreamResponse(parts, None if request.get("stream") is not False else "message")

    @staticmethod
    def _unloaded(name: str, field: str) -> dict[str, Any]:
        empty: Any = {"role": "assistant", "content": ""} if field == "message" else ""
        return {
            "model": name,
            "created_at": utc_timestamp(),
            field: empty,
            "done_reason": "unload",
            "done": True,
        }

    def _llama(self, runner: Any) -> LlamaRunner | HFRunner:
        if not isinstance(runner, LlamaRunner | HFRunner):
            raise APIError(500, "this model cannot generate text")
        return runner

    def _chat_parts(
        self,
        name: str,
        model: PresentModel,
        messages: list[Mapping[str, Any]],
        tools: list[Mapping[str, Any]],
        options: GenerationOptions,
        grammar: Any,
        keep_alive: float | None,
        started: float,
    ) -> Generator[dict[str, Any], None, None]:
        def chunk(message: dict[str, Any]) -> dict[str, Any]:
            return {"model": name, "created_at": utc_timestamp(), "message": message, "done": False}

        with self.scheduler.use(
            model, keep_alive=keep_alive, num_ctx=options.num_ctx, num_thread=options.num_thread
        ) as (runner, _):
            llama = self._llama(runner)
            loaded = time.perf_counter()
            if not messages:
                yield {
                    "model": name,
                    "created_at": utc_timestamp(),
                    "message": {"role": "assistant", "content": ""},
                    "done_reason": "load",
                    "done": True,
                }
                return
            prompt = llama.fit_prompt(messages, tools, num_ctx=options.num_ctx)
            if logger.isEnabledFor(logging.DEBUG):  # as Ollama logs it with OLLAMA_DEBUG=1
                shown = llama.last_prompt
                logger.debug('chat request model=%s tools=%d prompt="%s"', name, len(tools), shown)
            splitter = ToolCallStream(_tool_names(tools)) if tools else None
            for event in llama.generate(prompt, options, grammar):
                if isinstance(event, Finished):
                    if splitter is not None:
                        tail, calls = splitter.finish()
                        if tail:
                            yield chunk({"role": "assistant", "content": tail})
                        if calls:
                            yield chunk(
                                {
                                    "role": "assistant",
                                    "content": "",
                                    "tool_calls": [c.to_ollama(i) for i, c in enumerate(calls)],
                                }
                            )
                    yield {
                        "model": name,
                        "created_at": utc_timestamp(),
                        "message": {"role": "assistant", "content": ""},
                        **_final_counters(event, started, loaded),
                    }
                    return
                text = splitter.feed(event.text) if splitter is not None else event.text
                if text:
                    yield chunk({"role": "assistant", "content": text})

    # -- generate -----------------------------------------------------------------------------

    def generate(self, body: Any) -> Response:
        """`POST /api/generate`: a completion of one prompt (chat template applied unless raw)."""
        started = time.perf_counter()
        request = _object(body)
        name = _model_name(request)
        keep_alive = parse_keep_alive(request.get("keep_alive"))
        model = self._present(name, f"model '{name}' not found")
        prompt = request.get("prompt") or ""
        if not isinstance(prompt, str):
            raise APIError(400, "prompt must be a string")
        if not prompt and keep_alive == 0:
            self.scheduler.unload(model.name)
            return JSONResponse(200, self._unloaded(name, "response"))
        facts = self._facts(model)
        if "completion" not in facts.capabilities:
            raise APIError(400, f'"{name}" does not support generate')
        if request.get("suffix"):
            raise APIError(400, f'"{name}" does not support insert')
        if _wants_thinking(request.get("think")):
            raise APIError(400, f'"{name}" does not support thinking')
        options = GenerationOptions.from_request(request.get("options"))
        grammar = _format_for(model, request.get("format"))
        messages: list[Mapping[str, Any]] = []
        if isinstance(request.get("system"), str) and request["system"]:
            messages.append({"role": "system", "content": request["system"]})
        messages.append({"role": "user", "content": prompt})
        raw = bool(request.get("raw"))
        parts = self._generate_parts(
            name, model, prompt, messages, raw, options, grammar, keep_alive, started
        )
        return StreamResponse(parts, None if request.get("stream") is not False else "response")

    def _generate_parts(
        self,
        name: str,
        model: PresentModel,
        prompt: str,
        messages: list[Mapping[str, Any]],
        raw: bool,
        options: GenerationOptions,
        grammar: Any,
        keep_alive: float | None,
        started: float,
    ) -> Generator[dict[str, Any], None, None]:
        with self.scheduler.use(
            model, keep_alive=keep_alive, num_ctx=options.num_ctx, num_thread=options.num_thread
        ) as (runner, _):
            llama = self._llama(runner)
            loaded = time.perf_counter()
            if not prompt:
                yield {
                    "model": name,
                    "created_at": utc_timestamp(),
                    "response": "",
                    "done_reason": "load",
                    "done": True,
                }
                return
            if raw:
                tokens = llama.tokenize(prompt)
                if len(tokens) >= llama.context_limit(options.num_ctx):
                    raise APIError(400, "the input length exceeds the context length")
            else:
                tokens = llama.fit_prompt(messages, num_ctx=options.num_ctx)
            for event in llama.generate(tokens, options, grammar):
                if isinstance(event, Finished):
                    yield {
                        "model": name,
                        "created_at": utc_timestamp(),
                        "response": "",
                        **_final_counters(event, started, loaded),
                    }
                    return
                yield {
                    "model": name,
                    "created_at": utc_timestamp(),
                    "response": event.text,
                    "done": False,
                }

    # -- embeddings ---------------------------------------------------------------------------

    def _embedder(self, name: str) -> PresentModel:
        model = self._present(name, f'model "{name}" not found, try pulling it first')
        if "embedding" not in self._facts(model).capabilities:
            raise APIError(400, f"{qualified_name(name)} does not support embedding")
        return model

    def embed(self, body: Any) -> Response:
        """`POST /api/embed`: unit-length embeddings of a string or a list of strings."""
        started = time.perf_counter()
        request = _object(body)
        name = _model_name(request)
        raw_input = request.get("input")
        if raw_input is None:
            texts: list[str] = []
        elif isinstance(raw_input, str):
            texts = [raw_input] if raw_input else []
        elif isinstance(raw_input, list) and all(isinstance(x, str) for x in raw_input):
            texts = list(raw_input)
        else:
            raise APIError(400, "invalid input type")
        dimensions = request.get("dimensions")
        if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 0):
            raise APIError(400, "dimensions must be a positive whole number")
        keep_alive = parse_keep_alive(request.get("keep_alive"))
        model = self._embedder(name)
        with self.scheduler.use(model, keep_alive=keep_alive) as (runner, _):
            if not isinstance(runner, MiniLMRunner):
                raise APIError(500, "this model cannot make embeddings")
            loaded = time.perf_counter()
            if not texts:
                return JSONResponse(200, {"model": name, "embeddings": []})
            result = runner.embed(texts, truncate=request.get("truncate") is not False)
        vectors = result.vectors
        if dimensions and dimensions < len(vectors[0]):
            vectors = [_renormalize(v[:dimensions]) for v in vectors]
        return JSONResponse(
            200,
            {
                "model": name,
                "embeddings": vectors,
                "total_duration": nanoseconds(time.perf_counter() - started),
                "load_duration": nanoseconds(loaded - started),
                "prompt_eval_count": result.token_count,
            },
        )

    def embeddings(self, body: Any) -> Response:
        """`POST /api/embeddings` (legacy): one embedding of `prompt`."""
        request = _object(body)
        name = _model_name(request)
        prompt = request.get("prompt") or ""
        if not isinstance(prompt, str):
            raise APIError(400, "prompt must be a string")
        keep_alive = parse_keep_alive(request.get("keep_alive"))
        model = self._embedder(name)
        with self.scheduler.use(model, keep_alive=keep_alive) as (runner, _):
            if not isinstance(runner, MiniLMRunner):
                raise APIError(500, "this model cannot make embeddings")
            if not prompt:
                return JSONResponse(200, {"embedding": []})
            result = runner.embed([prompt])
        return JSONResponse(200, {"embedding": result.vectors[0]})


def _format_for(model: PresentModel, format_value: Any) -> Any:
    """The `format` of a request, prepared for the model's backend (None for free text)."""
    if model.spec.kind == KIND_HF:
        return build_format(format_value)
    return build_grammar(format_value)


def _renormalize(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5
    return [x / max(norm, 1e-12) for x in vector]


def _final_counters(event: Finished, started: float, loaded: float) -> dict[str, Any]:
    """The `done` part of a chat or generate answer, with Ollama's counters in nanoseconds."""
    return {
        "done_reason": event.done_reason,
        "done": True,
        "total_duration": nanoseconds(time.perf_counter() - started),
        "load_duration": nanoseconds(loaded - started),
        "prompt_eval_count": event.prompt_eval_count,
        "prompt_eval_duration": nanoseconds(event.prompt_eval_duration),
        "eval_count": event.eval_count,
        "eval_duration": nanoseconds(event.eval_duration),
    }


def collect(parts: Iterator[dict[str, Any]], field: str) -> dict[str, Any]:
    """Fold streamed parts into the single object Ollama returns with `stream: false`.

    Args:
        parts: The parts of a streamed answer.
        field: `message` (chat), `response` (generate) or `status` (pull: the last part).
    """
    if field == "status":
        last: dict[str, Any] = {}
        for part in parts:
            last = part
        return last
    texts: list[str] = []
    calls: list[Any] = []
    final: dict[str, Any] = {}
    for part in parts:
        final = part
        value = part.get(field)
        if field == "message" and isinstance(value, Mapping):
            texts.append(str(value.get("content") or ""))
            calls.extend(value.get("tool_calls") or [])
        elif isinstance(value, str):
            texts.append(value)
    result = dict(final)
    if field == "message":
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
        if calls:
            message["tool_calls"] = calls
        result["message"] = message
    else:
        result["response"] = "".join(texts)
    return result


__all__ = [
    "ENGINE_VERSION",
    "JSONResponse",
    "OllamaAPI",
    "Response",
    "StreamResponse",
    "TextResponse",
    "collect",
]
