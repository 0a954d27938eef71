"""A scripted Ollama server process that dies by SIGKILL at a chosen chat request. Not a model.

For the durability tests: a fake `ollama` executable runs it as `ollama serve`, so the toolkit
starts and owns it like a real server, and it kills itself (SIGKILL, no clean-up, like the OOM
killer) when a chosen chat request arrives, before answering. The toolkit sees the connection
drop in the middle of a run.

    python -m tests.durability_ollama --port 11500 --script script.json

`script.json` is `{"replies": [...], "die_at": N}`: the replies in `tests.fake_ollama`'s script
form, and the 1-based number of the chat request (one that asks for a reply, not a model load)
at which the process kills itself; 0 or absent means never. The first line of stdout is the URL.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.fake_ollama import FakeOllama, ScriptedReply


@dataclass
class DyingFakeOllama(FakeOllama):
    """`FakeOllama` that SIGKILLs its own process at the `die_at`-th chat reply it is asked for.

    Attributes:
        die_at: 1-based number of the chat request to die at; 0 means never.
        asked: Chat replies asked for so far.
    """

    die_at: int = 0
    asked: int = 0

    def _pop(self) -> ScriptedReply | None:
        with self._lock:
            self.asked += 1
            number = self.asked
        if number == self.die_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return super()._pop()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the script until SIGTERM (or the chosen request); print the URL first."""
    parser = argparse.ArgumentParser(prog="python -m tests.durability_ollama")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--script", type=Path, required=True)
    args = parser.parse_args(argv)
    script = json.loads(args.script.read_text(encoding="utf-8"))
    server = DyingFakeOllama(port=args.port, die_at=int(script.get("die_at") or 0))
    server.load_script(script.get("replies") or [])
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(server.url, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
