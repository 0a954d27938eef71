"""A scripted OpenAI-compatible chat server for tests. It is not a model.

`FakeOpenAI` answers the two routes ollagraph uses, so the real `openai` client and
langchain-openai's `ChatOpenAI` run unchanged against it:

- `GET /v1/models`: the configured models (`{"object": "list", "data": [{"id": ...}]}`), with
  `max_model_len` when `context_lengths` names one (as vLLM reports it).
- `POST /v1/chat/completions`: the next queued reply, as one `chat.completion` object or, with
  `"stream": true`, as server-sent `chat.completion.chunk` events ending in `data: [DONE]`. A reply
  is text or `tool_calls` (with `finish_reason: "tool_calls"`).

Errors come back in OpenAI's shape `{"error": {"message", "type", "code"}}`: 401 when `api_key`
is set and the request's bearer token differs; 404 for a model not in `models`; 400 when the
request's `response_format.type` is in `reject_formats` (the message names `response_format`, as
servers without structured outputs answer); 500 when the queue is empty.

Every request is recorded in `requests` as `(method, path, headers (lower-case names), JSON body
or None)`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fake_ollama import _QuietServer  # a client hanging up mid-reply is normal


class FakeOpenAI:
    """A scripted OpenAI-compatible server on `host`, run in a background thread."""

    def __init__(
        self,
        models: Sequence[str] = ("smollm2",),
        *,
        host: str = "127.0.0.1",
        api_key: str | None = None,
        context_lengths: Mapping[str, int] | None = None,
        reject_formats: Sequence[str] = (),
        delay: float = 0.0,
    ) -> None:
        """Configure the server (start it with `start()` or `with`)."""
        self.models = list(models)
        self.host = host
        self.api_key = api_key
        self.context_lengths = dict(context_lengths or {})
        self.reject_formats = set(reject_formats)
        self.delay = delay
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self._queue: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # -- script ---------------------------------------------------------------------------------

    def enqueue_text(self, text: str) -> None:
        """Queue an assistant reply with `text`."""
        self._queue.append({"content": text})

    def enqueue_tool_call(self, name: str, arguments: Mapping[str, Any]) -> None:
        """Queue an assistant reply that calls `name` with `arguments`."""
        self._queue.append({"tool_calls": [(name, dict(arguments))]})

    @property
    def chat_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of every chat request, in order."""
        return [body for _, path, _, body in self.requests if path.endswith("/chat/completions")]

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API base URL (`http://host:port/v1`)."""
        assert self._httpd is not None, "not started"
        return f"http://{self.host}:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        """Bind a free port and serve in a daemon thread."""
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = _QuietServer((self.host, 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _error(status: int, message: str, kind: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": kind, "code": None, "param": None}}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        key = self.fake.api_key
        return key is None or self.headers.get("Authorization") == f"Bearer {key}"

    def _record(self, body: Any) -> None:
        with self.fake._lock:
            headers = {k.lower(): v for k, v in self.headers.items()}
            self.fake.requests.append((self.command, self.path, headers, body))

    def do_GET(self) -> None:
        self._record(None)
        if not self._authorized():
            self._send(*_error(401, "Invalid API key", "authentication_error"))
        elif self.path.rstrip("/") == "/v1/models":
            data = []
            for name in self.fake.models:
                entry: dict[str, Any] = {"id": name, "object": "model", "owned_by": "test"}
                if name in self.fake.context_lengths:
                    entry["max_model_len"] = self.fake.context_lengths[name]
                data.append(entry)
            self._send(200, {"object": "list", "data": data})
        else:
            self._send(*_error(404, f"no route {self.path}", "not_found"))

    def do_POST(self) -> None:
        body = self._body()
        self._record(body)
        if not self._authorized():
            return self._send(*_error(401, "Invalid API key", "authentication_error"))
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send(*_error(404, f"no route {self.path}", "not_found"))
        model = str(body.get("model"))
        if model not in self.fake.models:
            return self._send(*_error(404, f"The model `{model}` does not exist.", "NotFoundError"))
        kind = (body.get("response_format") or {}).get("type")
        if kind in self.fake.reject_formats:
            return self._send(
                *_error(400, f"response_format type {kind!r} is not supported", "BadRequest")
            )
        with self.fake._lock:
            reply = self.fake._queue.popleft() if self.fake._queue else None
        if reply is None:
            return self._send(*_error(500, "the script ran out of replies", "server_error"))
        if self.fake.delay:
            time.sleep(self.fake.delay)
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("content", "")}
        finish = "stop"
        if reply.get("tool_calls"):
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": f"call_{uuid.uuid4().hex[:8]}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for name, args in reply["tool_calls"]
            ]
            finish = "tool_calls"
        if body.get("stream"):
            return self._stream(model, message, finish)
        self._send(
            200,
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    def _stream(self, model: str, message: dict[str, Any], finish: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        text = message.get("content") or ""
        step = max(1, len(text) // 3)
        deltas += [{"content": text[i : i + step]} for i in range(0, len(text), step)]
        if message.get("tool_calls"):
            deltas.append(
                {"tool_calls": [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]}
            )
        chunks = [{"index": 0, "delta": d, "finish_reason": None} for d in deltas]
        chunks.append({"index": 0, "delta": {}, "finish_reason": finish})
        for choice in chunks:
            event = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
            }
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True
