"""The engine's HTTP server: Ollama's routes on the standard library's threading server.

`EngineServer` binds an address (port 0 picks a free one), serves each connection in its own
thread and routes requests to `handlers.OllamaAPI`. Streamed answers are NDJSON over chunked
transfer encoding, one JSON object per line, flushed as generated. One line per request goes
to the `ollagraph.engine` logger (stderr when run as `python -m ollagraph.agents.engine serve`).

In-process use (tests, `agent serve`)::

    with EngineServer("127.0.0.1", 0) as server:   # serving in a background thread
        ollama.Client(host=server.url).list()

or blocking, until `stop` is set (the command line sets it on SIGTERM/SIGINT)::

    serve("127.0.0.1", 11434, ready=ready, stop=stop)
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ollagraph.agents.engine.handlers import (
    ENGINE_VERSION,
    OllamaAPI,
    Response,
    StreamResponse,
    TextResponse,
    collect,
)
from ollagraph.agents.engine.protocol import APIError
from ollagraph.agents.engine.registry import default_models_dir

logger = logging.getLogger("ollagraph.engine")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11434

Route = Callable[[OllamaAPI, Any], Response]

ROUTES: dict[str, dict[str, Route]] = {
    "/": {"GET": lambda api, _: api.root(), "HEAD": lambda api, _: api.root()},
    "/api/version": {
        "GET": lambda api, _: api.version(),
        "HEAD": lambda api, _: api.version(),
    },
    "/api/tags": {"GET": lambda api, _: api.tags(), "HEAD": lambda api, _: api.tags()},
    "/api/ps": {"GET": lambda api, _: api.ps()},
    "/api/show": {"POST": OllamaAPI.show},
    "/api/pull": {"POST": OllamaAPI.pull},
    "/api/delete": {"DELETE": OllamaAPI.delete},
    "/api/chat": {"POST": OllamaAPI.chat},
    "/api/generate": {"POST": OllamaAPI.generate},
    "/api/embed": {"POST": OllamaAPI.embed},
    "/api/embeddings": {"POST": OllamaAPI.embeddings},
}


def parse_bind_address(value: str | None) -> tuple[str, int]:
    """Read an `OLLAMA_HOST`-style value as the address to listen on, as `ollama serve` does.

    Args:
        value: `host`, `host:port`, `:port`, `0.0.0.0`, `[::1]:11434` or a URL; empty means
            127.0.0.1:11434.

    Raises:
        ValueError: The port is not a number.
    """
    text = (value or "").strip().rstrip("/")
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = rest.partition(":")
    if not port_text:
        port_text = "443" if scheme == "https" else str(DEFAULT_PORT)
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"invalid port {port_text!r} in {value!r}") from None
    return host or DEFAULT_HOST, port


class _ClientGone(Exception):
    """The client closed the connection before the answer was complete."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """Routes one connection's requests to the API."""

    api: OllamaAPI
    protocol_version = "HTTP/1.1"
    server_version = f"ollagraph-engine/{ENGINE_VERSION}"
    # Buffered writes, flushed once per streamed part (and by `handle_one_request` after each
    # response): the headers leave with the first token, in one send. Sent apart, they cost the
    # client a second wake-up while the next token's compute holds the CPUs (first token 2-4
    # ms later on a 2-core machine).
    wbufsize = -1
    _status = 0

    def setup(self) -> None:
        """Turn off Nagle's algorithm on the connection.

        A streamed answer is many small writes (the headers, then one chunk per token); with
        Nagle's algorithm on, a small write waits for the client's delayed ACK (40 ms on Linux)
        before it leaves, which delays the first token and every later one.
        """
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Silence the default access log; `_handle` writes one line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        """Route the base class's messages (bad requests) to the engine's logger."""
        logger.debug("%s - %s", self.address_string(), format % args)

    def send_response(self, code: int, message: str | None = None) -> None:
        """Remember the status for the access log."""
        self._status = code
        super().send_response(code, message)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- plumbing -----------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_json(self) -> Any:
        raw = self._read_body()
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise APIError(400, f"invalid JSON in request body: {exc}") from None

    def _send_bytes(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def _send_json(self, status: int, payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self._send_bytes(status, "application/json; charset=utf-8", data)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send_stream(self, response: StreamResponse) -> None:
        parts = response.parts
        try:
            try:
                first: dict[str, Any] | None = next(parts)
            except StopIteration:
                first = None
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                if first is not None:
                    self._write_chunk(json.dumps(first).encode() + b"\n")
                for part in parts:
                    self._write_chunk(json.dumps(part).encode() + b"\n")
            except APIError as exc:
                self._write_chunk(json.dumps(exc.payload()).encode() + b"\n")
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as exc:
                logger.exception("error while streaming %s", self.path)
                self._write_chunk(json.dumps({"error": str(exc)}).encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        finally:
            parts.close()

    def _client_gone(self) -> bool:
        """Whether the client closed the connection (checked without consuming input)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _watched(self, parts: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pass parts through, stopping if the client disconnects (checked twice a second)."""
        checked = time.monotonic()
        for part in parts:
            yield part
            if time.monotonic() - checked > 0.5:
                checked = time.monotonic()
                if self._client_gone():
                    raise _ClientGone

    def _send_collected(self, response: StreamResponse, field: str) -> None:
        parts = response.parts
        try:
            folded = collect(self._watched(parts), field)
        except _ClientGone:
            self._status = 499  # Ollama's "request canceled"
            self.close_connection = True
            return
        finally:
            parts.close()
        self._send_json(200, folded)

    def _send(self, response: Response) -> None:
        if isinstance(response, StreamResponse) and response.collect:
            self._send_collected(response, response.collect)
        elif isinstance(response, StreamResponse):
            self._send_stream(response)
        elif isinstance(response, TextResponse):
            self._send_bytes(response.status, "text/plain; charset=utf-8", response.text.encode())
        else:
            self._send_json(response.status, response.body)

    def _handle(self, method: str) -> None:
        started = time.perf_counter()
        self._status = 0
        path = urlsplit(self.path).path
        try:
            methods = ROUTES.get(path)
            if methods is None:
                self._send_bytes(404, "text/plain; charset=utf-8", b"404 page not found")
                return
            route = methods.get(method)
            if route is None:
                self._send_bytes(405, "text/plain; charset=utf-8", b"405 method not allowed")
                return
            body = self._read_json() if method in ("POST", "DELETE") else None
            self._send(route(self.api, body))
        except APIError as exc:
            self._send_json(exc.status, exc.payload())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            logger.exception("error handling %s %s", method, path)
            if not self._status:
                self._send_json(500, {"error": str(exc)})
            else:
                self.close_connection = True
        finally:
            elapsed = time.perf_counter() - started
            logger.info(
                '%s | %3d | %12s | %15s | %-7s "%s"',
                time.strftime("%Y/%m/%d - %H:%M:%S"),
                self._status,
                _human_duration(elapsed),
                self.client_address[0] if self.client_address else "-",
                method,
                path,
            )


def _human_duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f}ms"
    return f"{seconds:.2f}s"


class EngineServer:
    """The embedded engine listening on one address.

    Attributes:
        api: The endpoints (models, scheduler).
        host: The address to bind.
        port: The port (the bound one once `bind` ran; 0 before that means "pick one").
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        models_dir: Path | None = None,
    ) -> None:
        self.api = OllamaAPI(models_dir or default_models_dir())
        self.host = host
        self.port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL clients use (`http://127.0.0.1:PORT`)."""
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def bind(self) -> EngineServer:
        """Open the listening socket (port 0 picks a free port). Returns self.

        Raises:
            OSError: The address is in use or cannot be bound.
        """
        if self._httpd is None:
            handler = type("EngineHandler", (_Handler,), {"api": self.api})
            server_class = _Server6 if ":" in self.host else _Server
            self._httpd = server_class((self.host, self.port), handler)
            self.port = int(self._httpd.server_address[1])
        return self

    def serve_forever(self, ready: threading.Event | None = None) -> None:
        """Serve in the calling thread until `shutdown` is called from another one."""
        httpd = self.bind()._httpd
        assert httpd is not None
        logger.info("Listening on %s (version %s)", self.url, ENGINE_VERSION)
        if isinstance(ready, ServerReady):
            ready.server = self
        if ready is not None:
            ready.set()
        httpd.serve_forever(poll_interval=0.2)

    def start(self) -> EngineServer:
        """Serve in a background thread. Returns self."""
        if self._thread is None:
            started = threading.Event()
            self.bind()
            self._thread = threading.Thread(
                target=self.serve_forever, args=(started,), name="ollagraph-engine", daemon=True
            )
            self._thread.start()
            started.wait(5)
        return self

    def shutdown(self) -> None:
        """Stop serving, close the socket and unload every model."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            if self._thread is not None:
                httpd.shutdown()
                self._thread.join(timeout=10)
                self._thread = None
            httpd.server_close()
        self.api.scheduler.shutdown()

    def __enter__(self) -> EngineServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


class ServerReady(threading.Event):
    """An event set when the server listens; `server` then holds it (for its `url`/`port`)."""

    server: EngineServer | None = None


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
    models_dir: Path | None = None,
) -> None:
    """Run the engine until `stop` is set (or forever), then shut down cleanly.

    Args:
        host: Address to listen on.
        port: Port to listen on (0 picks a free one).
        ready: Set once the socket is bound; a `ServerReady` also receives the server, so
            the caller can read the bound port (`ready.server.port`).
        stop: Set it (from any thread, or a signal handler) to stop; None serves forever.
        models_dir: Where models are kept (default `$OLLAGRAPH_HOME/models`).

    Raises:
        OSError: The address cannot be bound.
    """
    server = EngineServer(host, port, models_dir=models_dir).bind()
    if stop is None:
        try:
            server.serve_forever(ready)
        finally:
            server.shutdown()
        return
    server.start()
    if isinstance(ready, ServerReady):
        ready.server = server
    if ready is not None:
        ready.set()
    try:
        stop.wait()
    finally:
        logger.info("Shutting down")
        server.shutdown()


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "EngineServer",
    "ServerReady",
    "parse_bind_address",
    "serve",
]
