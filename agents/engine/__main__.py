"""Command line of the embedded engine, shaped like the `ollama` executable's.

    python -m ollagraph.agents.engine serve      # listen on $OLLAMA_HOST (127.0.0.1:11434)
    python -m ollagraph.agents.engine --version

A script named `ollama` on PATH that runs `exec python -m ollagraph.agents.engine "$@"` behaves
like `ollama serve` for a process manager: it binds `OLLAMA_HOST`, logs one line per request to
stderr, and shuts down cleanly (unloading models) on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from ollagraph.agents.engine.handlers import ENGINE_VERSION
from ollagraph.agents.engine.server import parse_bind_address, serve


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run it; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="ollama",
        description="ollagraph's embedded Ollama-compatible engine.",
    )
    parser.add_argument("-v", "--version", action="store_true", help="show the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve_parser = commands.add_parser(
        "serve", help="start the server (address from OLLAMA_HOST, default 127.0.0.1:11434)"
    )
    serve_parser.add_argument("--host", help="address to bind, overriding OLLAMA_HOST")
    serve_parser.add_argument("--port", type=int, help="port to bind, overriding OLLAMA_HOST")
    args = parser.parse_args(argv)

    if args.version:
        print(f"ollama version is {ENGINE_VERSION}")
        return 0
    if args.command != "serve":
        parser.print_help(sys.stderr)
        return 2

    import os

    try:
        host, port = parse_bind_address(os.environ.get("OLLAMA_HOST"))
    except ValueError as exc:
        print(f"Error: OLLAMA_HOST: {exc}", file=sys.stderr)
        return 1
    host = args.host or host
    port = args.port if args.port is not None else port

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="[engine] %(message)s",
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        serve(host, port, stop=stop)
    except OSError as exc:
        print(f"Error: listen tcp {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
