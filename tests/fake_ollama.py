"""A scripted Ollama-compatible HTTP server for tests. It is not a model.

`FakeOllama` speaks the parts of Ollama's HTTP API (docs/api.md) that ollagraph uses, so the real
clients (`ollama.Client`, langchain-ollama's `ChatOllama`) run unchanged against it:

- `POST /api/chat` replays the next reply from a FIFO queue, streamed as NDJSON (text in a few
  chunks, tool calls in one chunk, then a final `done: true` chunk with `done_reason` and timing
  counters) or, with `"stream": false`, as one JSON object. An empty queue answers HTTP 500 with
  Ollama's error shape `{"error": "..."}`, saying that the script ran out.
- `GET /api/version`, `GET /api/tags` (the configured models), `POST /api/show` (capabilities
  `completion` and `tools`), `GET /api/ps`, and `GET /` ("Ollama is running").
- An unknown model answers 404 with Ollama's own messages: `model "x" not found, try pulling it
  first` on chat, `model 'x' not found` on show.
- `POST /api/pull` streams NDJSON progress like Ollama: `pulling manifest`, then per layer
  `pulling <digest>` events with `digest`, `total` and `completed`, then `verifying sha256
  digest`, `writing manifest`, `success`. A model in `pullable` (see `add_pullable`) is added to
  `models` when its pull succeeds; a model already present pulls with no layers; anything else
  (or every pull, when `pull_error` is set, e.g. to simulate no network) streams
  `{"error": ...}` after the manifest line, as Ollama does.
- `show_overrides[name]` replaces top-level fields of that model's `/api/show` answer (a value of
  None removes the field, e.g. `capabilities` for a server older than 0.6); `digests[name]`
  sets the digest `/api/tags` reports for it.

Every request is recorded as `(path, parsed JSON body or None)` in `server.requests`, so a test can
assert exactly what a client sent (tools, `options.temperature`, `options.num_ctx`, `keep_alive`).

In a test (the `fake_ollama` fixture in `tests/integration/conftest.py` does this and sets
`OLLAMA_HOST`)::

    with FakeOllama() as server:
        server.enqueue_text("Hello!")
        server.enqueue_tool_call("sql_query", {"query": "SELECT 1"})
        ChatOllama(model="smollm2:135m", base_url=server.url).invoke("hi")

As a process (for a server under test that must reach it by URL)::

    python -m tests.fake_ollama --port 11500 --script script.json --record requests.jsonl

where `script.json` is a list of replies, or `{"models": [...], "replies": [...]}`, each reply
one of `{"content": "text"}`, `{"tool_calls": [{"name": "f", "arguments": {...}}], "content": ""}`
or `{"error": "message", "status": 500}`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

DEFAULT_MODELS: tuple[str, ...] = ("smollm2:135m",)
FAKE_VERSION = "0.12.0"
_DIGEST = "0" * 64


@dataclass(frozen=True)
class ScriptedReply:
    """One queued answer of the fake model (or an error the server should return).

    Attributes:
        content: Assistant text; streamed in a few chunks.
        tool_calls: `(name, arguments)` pairs, sent as `message.tool_calls`.
        thinking: Optional `message.thinking` text (for reasoning-model tests).
        error: When set, the request fails with this message and `status` instead.
        status: HTTP status of a scripted error.
    """

    content: str = ""
    tool_calls: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    thinking: str | None = None
    error: str | None = None
    status: int = 500

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScriptedReply:
        """Build a reply from its script form (see the module docstring)."""
        if "error" in data:
            return cls(error=str(data["error"]), status=int(data.get("status", 500)))
        calls = tuple(
            (str(call["name"]), dict(call.get("arguments") or {}))
            for call in data.get("tool_calls") or ()
        )
        return cls(
            content=str(data.get("content", "")), tool_calls=calls, thinking=data.get("thinking")
        )


@dataclass
class FakeOllama:
    """A scripted Ollama server on 127.0.0.1, run in a background thread.

    Attributes:
        models: Model names the server "has" (`/api/tags`); others answer 404. A name without a
            tag matches `name:latest`, as in Ollama.
        host: Address to bind.
        port: Port to bind; 0 picks a free one.
        chunk_delay: Seconds to sleep between streamed chunks (0: none).
        requests: Every request received, as `(path, parsed JSON body or None)`.
        pullable: Models `/api/pull` can fetch, each with the progress events to stream.
        pull_error: When set, every `/api/pull` fails with this message (after the manifest line).
        show_overrides: Per model, top-level `/api/show` fields to replace (None removes one).
        digests: Per model, the digest `/api/tags` reports (default: 64 zeros).
    """

    models: Sequence[str] = DEFAULT_MODELS
    host: str = "127.0.0.1"
    port: int = 0
    chunk_delay: float = 0.0
    requests: list[tuple[str, Any]] = field(default_factory=list)
    record_to: TextIO | None = None
    pullable: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    pull_error: str | None = None
    show_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    _queue: deque[ScriptedReply] = field(default_factory=deque, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _httpd: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    # -- script -------------------------------------------------------------------------------

    def enqueue_text(self, text: str, *, thinking: str | None = None) -> None:
        """Queue a plain text reply (no tool call)."""
        self._push(ScriptedReply(content=text, thinking=thinking))

    def enqueue_tool_call(
        self, name: str, arguments: Mapping[str, Any] | None = None, *, content: str = ""
    ) -> None:
        """Queue a reply that calls one tool.

        Args:
            name: Tool (function) name.
            arguments: The call's arguments, sent as a JSON object (as Ollama does).
            content: Text that accompanies the call (usually empty).
        """
        self.enqueue_tool_calls([(name, arguments or {})], content=content)

    def enqueue_tool_calls(
        self, calls: Iterable[tuple[str, Mapping[str, Any]]], *, content: str = ""
    ) -> None:
        """Queue one reply that calls several tools at once (parallel tool calls)."""
        frozen = tuple((name, dict(args)) for name, args in calls)
        if not frozen:
            raise ValueError("enqueue_tool_calls needs at least one (name, arguments) pair")
        self._push(ScriptedReply(content=content, tool_calls=frozen))

    def enqueue_error(self, message: str, *, status: int = 500) -> None:
        """Queue a failure: the next chat request answers `status` with `{"error": message}`."""
        self._push(ScriptedReply(error=message, status=status))

    def load_script(self, replies: Iterable[Mapping[str, Any]]) -> None:
        """Queue replies given in their JSON script form (see the module docstring)."""
        for reply in replies:
            self._push(ScriptedReply.from_json(reply))

    def add_pullable(
        self, name: str, layers: Sequence[tuple[str, int]] = (), *, steps: int = 3
    ) -> None:
        """Make `name` pullable, streaming `steps` progress events per `(digest, size)` layer.

        Args:
            name: The model (`x` means `x:latest`).
            layers: The layers' digests and sizes in bytes; default: one 1,000-byte layer.
            steps: Progress events per layer (the last one has `completed == total`).
        """
        layers = list(layers) or [("sha256:" + "1" * 64, 1000)]
        events: list[dict[str, Any]] = []
        for digest, size in layers:
            events.append({"status": f"pulling {digest}", "digest": digest, "total": size})
            for step in range(1, steps + 1):
                events.append(
                    {
                        "status": f"pulling {digest}",
                        "digest": digest,
                        "total": size,
                        "completed": size * step // steps,
                    }
                )
        with self._lock:
            self.pullable[_with_tag(name)] = events

    @property
    def pull_requests(self) -> list[dict[str, Any]]:
        """The bodies of every `/api/pull` request, in order."""
        with self._lock:
            return [body for path, body in self.requests if path == "/api/pull"]

    @property
    def remaining(self) -> int:
        """Number of queued replies not yet served."""
        with self._lock:
            return len(self._queue)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """The bodies of every `/api/chat` request, in order."""
        with self._lock:
            return [body for path, body in self.requests if path == "/api/chat"]

    def _push(self, reply: ScriptedReply) -> None:
        with self._lock:
            self._queue.append(reply)

    def _pop(self) -> ScriptedReply | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _record(self, path: str, body: Any) -> int:
        with self._lock:
            self.requests.append((path, body))
            if self.record_to is not None:
                self.record_to.write(json.dumps({"path": path, "body": body}) + "\n")
                self.record_to.flush()
            return len(self.requests)

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the running server (what `OLLAMA_HOST` should be)."""
        if self._httpd is None:
            raise RuntimeError("FakeOllama is not running; call start() or use it as a context")
        port = self._httpd.server_address[1]
        return f"http://{self.host}:{port}"

    def start(self) -> FakeOllama:
        """Bind the port and serve in a daemon thread. Returns self."""
        if self._httpd is not None:
            return self
        handler = type("FakeOllamaHandler", (_Handler,), {"fake": self})
        self._httpd = _QuietServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-ollama",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- model names --------------------------------------------------------------------------

    def has_model(self, name: str) -> bool:
        """Whether `name` is one of the configured models (`x` matches `x:latest`)."""
        wanted = _with_tag(name)
        return any(_with_tag(model) == wanted for model in self.models)


def _with_tag(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _split_text(text: str, pieces: int = 3) -> list[str]:
    """Cut text at word boundaries into at most `pieces` chunks that join back to `text`."""
    if not text:
        return []
    words = text.split(" ")
    size = max(1, -(-len(words) // pieces))
    chunks = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    return [chunk + " " for chunk in chunks[:-1]] + [chunks[-1]]


def _token_estimate(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    words = 0
    for message in messages:
        if isinstance(message, Mapping):
            words += len(str(message.get("content") or "").split()) + 4
    return words


class _QuietServer(ThreadingHTTPServer):
    """Treats a client that hangs up mid-response (a CLI stopping a pull stream) as normal.

    socketserver prints every handler exception to stderr with a traceback; printed from a
    server thread while a test captures stderr with CliRunner, a normal disconnect would land in
    that test's output. Any other error is still printed.
    """

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # BrokenPipe, ConnectionReset, ...
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the owning `FakeOllama` (set as the class attribute `fake`)."""

    fake: FakeOllama
    protocol_version = "HTTP/1.1"
    server_version = "FakeOllama/" + FAKE_VERSION

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""

    # -- plumbing -------------------------------------------------------------------------------

    def _read_body(self) -> tuple[Any, str | None]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None, None
        try:
            return json.loads(raw), None
        except json.JSONDecodeError as exc:
            return raw.decode("utf-8", "replace"), f"invalid JSON body: {exc}"

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_stream(self, parts: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, part in enumerate(parts):
            if index and self.fake.chunk_delay:
                time.sleep(self.fake.chunk_delay)
            line = json.dumps(part).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- routes -----------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.fake._record(self.path, None)
        if self.path == "/":
            self._send_text(200, "Ollama is running")
        else:
            self._send_text(404, "404 page not found")

    def do_GET(self) -> None:
        self.fake._record(self.path, None)
        if self.path == "/":
            self._send_text(200, "Ollama is running")
        elif self.path == "/api/version":
            self._send_json(200, {"version": FAKE_VERSION})
        elif self.path == "/api/tags":
            self._send_json(200, {"models": [self._model_entry(m) for m in self.fake.models]})
        elif self.path == "/api/ps":
            self._send_json(200, {"models": []})
        else:
            self._send_text(404, "404 page not found")

    def do_POST(self) -> None:
        body, error = self._read_body()
        number = self.fake._record(self.path, body)
        if self.path not in ("/api/chat", "/api/show", "/api/pull"):
            self._send_text(404, "404 page not found")
            return
        if error is not None or not isinstance(body, dict):
            self._send_json(400, {"error": error or "missing request body"})
            return
        model = body.get("model") or body.get("name") or ""
        if not model:
            self._send_json(400, {"error": "model is required"})
            return
        if self.path == "/api/pull":
            self._pull(model, body)
            return
        if self.path == "/api/show":
            if not self.fake.has_model(model):
                self._send_json(404, {"error": f"model '{model}' not found"})
            else:
                self._send_json(200, self._show(model))
            return
        if not self.fake.has_model(model):
            self._send_json(404, {"error": f'model "{model}" not found, try pulling it first'})
            return
        self._chat(model, body, number)

    # -- responses ----------------------------------------------------------------------------

    @staticmethod
    def _details() -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "135M",
            "quantization_level": "Q8_0",
        }

    def _model_entry(self, name: str) -> dict[str, Any]:
        tagged = _with_tag(name)
        return {
            "name": tagged,
            "model": tagged,
            "modified_at": "2025-01-01T00:00:00Z",
            "size": 1024,
            "digest": self.fake.digests.get(tagged, _DIGEST),
            "details": self._details(),
        }

    def _show(self, model: str) -> dict[str, Any]:
        show = self._default_show(model)
        for key, value in self.fake.show_overrides.get(_with_tag(model), {}).items():
            if value is None:
                show.pop(key, None)
            else:
                show[key] = value
        return show

    def _default_show(self, model: str) -> dict[str, Any]:
        return {
            "modelfile": f"# Scripted model served by tests/fake_ollama.py\nFROM {model}\n",
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": self._details(),
            "model_info": {
                "general.architecture": "llama",
                "general.parameter_count": 134515008,
                "llama.context_length": 8192,
            },
            "capabilities": ["completion", "tools"],
            "modified_at": "2025-01-01T00:00:00Z",
        }

    def _pull(self, model: str, body: dict[str, Any]) -> None:
        tagged = _with_tag(model)
        fake = self.fake
        with fake._lock:
            events = fake.pullable.get(tagged)
        present = fake.has_model(tagged)
        error = fake.pull_error
        if error is None and events is None and not present:
            error = "pull model manifest: file does not exist"
        parts: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        if error is not None:
            parts.append({"error": error})
        else:
            parts += list(events or [])
            parts += [
                {"status": "verifying sha256 digest"},
                {"status": "writing manifest"},
                {"status": "success"},
            ]
            if not present:
                with fake._lock:
                    fake.models = (*fake.models, tagged)
        if body.get("stream", True) is False:
            last = parts[-1]
            self._send_json(500 if "error" in last else 200, last)
            return
        self._send_stream(iter(parts))

    def _chat(self, model: str, body: dict[str, Any], number: int) -> None:
        messages = body.get("messages") or []
        if not messages:  # Ollama loads (or, with keep_alive 0, unloads) the model.
            reason = "unload" if body.get("keep_alive") in (0, "0", "0s") else "load"
            done = {
                "model": model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                "done_reason": reason,
                "done": True,
            }
            self._send_json(200, done)
            return
        reply = self.fake._pop()
        if reply is None:
            self._send_json(
                500,
                {
                    "error": f"fake_ollama: the script ran out of replies (request #{number}, "
                    f"POST /api/chat for model {model!r}); enqueue another reply"
                },
            )
            return
        if reply.error is not None:
            self._send_json(reply.status, {"error": reply.error})
            return
        tool_calls = [
            {"function": {"name": name, "arguments": dict(args)}} for name, args in reply.tool_calls
        ]
        final_stats = {
            "done_reason": "stop",
            "done": True,
            "total_duration": 12_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": _token_estimate(messages),
            "prompt_eval_duration": 3_000_000,
            "eval_count": max(1, len(reply.content.split()) + 8 * len(tool_calls)),
            "eval_duration": 8_000_000,
        }
        if body.get("stream", True) is False:
            message: dict[str, Any] = {"role": "assistant", "content": reply.content}
            if reply.thinking:
                message["thinking"] = reply.thinking
            if tool_calls:
                message["tool_calls"] = tool_calls
            self._send_json(
                200, {"model": model, "created_at": _now(), "message": message, **final_stats}
            )
            return

        def parts() -> Iterator[dict[str, Any]]:
            def chunk(message: dict[str, Any]) -> dict[str, Any]:
                return {"model": model, "created_at": _now(), "message": message, "done": False}

            if reply.thinking:
                yield chunk({"role": "assistant", "content": "", "thinking": reply.thinking})
            for text in _split_text(reply.content):
                yield chunk({"role": "assistant", "content": text})
            if tool_calls:
                yield chunk({"role": "assistant", "content": "", "tool_calls": tool_calls})
            yield {
                "model": model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                **final_stats,
            }

        self._send_stream(parts())


def main(argv: Sequence[str] | None = None) -> int:
    """Run a scripted server until SIGINT/SIGTERM; print its URL on the first line of stdout."""
    parser = argparse.ArgumentParser(prog="python -m tests.fake_ollama", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--script", type=Path, help="JSON list of replies, or {models, replies}")
    parser.add_argument("--model", action="append", help="a model name to serve (repeatable)")
    parser.add_argument("--record", type=Path, help="append each request as a JSON line here")
    args = parser.parse_args(argv)

    models: list[str] = list(args.model or [])
    replies: list[Mapping[str, Any]] = []
    if args.script is not None:
        script = json.loads(args.script.read_text(encoding="utf-8"))
        if isinstance(script, dict):
            models += list(script.get("models") or [])
            replies = list(script.get("replies") or [])
        else:
            replies = list(script)
    record = args.record.open("a", encoding="utf-8") if args.record else None
    server = FakeOllama(models=tuple(models) or DEFAULT_MODELS, host=args.host, port=args.port)
    server.record_to = record
    server.load_script(replies)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(server.url, flush=True)
        stop.wait()
    if record is not None:
        record.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
