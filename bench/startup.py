"""Benchmark: CLI start-up, `agent --help` wall time vs `llm --help` (PyPI `llm`).

`llm` lives only in the bench environment: `bench/.peers/venv`, made with `python -m venv` and
`pip install llm` on first use (needs PyPI). Both commands run as subprocesses, interleaved, after
one warm-up run each (so both read a warm page cache); each number is the median wall time.

    python bench/startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import median, row

PEERS = Path(__file__).resolve().parent / ".peers"
PEER_VENV = PEERS / "venv"
TARGET_SECONDS = 0.25


def agent_command() -> list[str]:
    """`agent --help`, from the same environment as this Python."""
    script = Path(sys.executable).parent / "agent"
    return [str(script), "--help"]


def llm_command() -> list[str]:
    """`llm --help` from the bench venv, installing `llm` there on first use."""
    script = PEER_VENV / "bin" / "llm"
    if not script.exists():
        if not (PEER_VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run(
            [str(PEER_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "llm"], check=True
        )
    return [str(script), "--help"]


def wall_time(command: Sequence[str]) -> float:
    """Seconds one run of `command` takes, start to exit (output discarded)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAGRAPH_")}
    started = time.perf_counter()
    subprocess.run(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - started


def run(
    repeats: int = 15, peer: Sequence[str] | None = None, peer_name: str = "llm --help"
) -> list[dict[str, Any]]:
    """Median wall time of `agent --help` and of the peer (default `llm --help`).

    Args:
        repeats: Runs of each command (interleaved), after one warm-up run each.
        peer: The peer command; None means `llm --help` from the bench venv.
        peer_name: How the row names the peer.
    """
    ours_cmd = agent_command()
    peer_cmd = list(peer) if peer is not None else llm_command()
    for command in (ours_cmd, peer_cmd):
        result = subprocess.run(command, capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(f"{command} failed: {result.stderr.decode()[-500:]}")
    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(wall_time(ours_cmd))
        theirs.append(wall_time(peer_cmd))
    ours_s, peer_s = median(ours), median(theirs)
    return [
        row(
            "startup",
            f"`agent --help` vs `{peer_name}` (wall s, median of {repeats})",
            ours_s,
            peer_s,
            "s",
            better="lower",
            target=1.0,
            extra_pass=ours_s <= TARGET_SECONDS,
            target_text=f"≤ {TARGET_SECONDS} s and ≤ 1×",
        )
    ]


def main() -> None:
    """Run the benchmark and print its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    from bench.run import table

    print(table(run(args.repeats)))


if __name__ == "__main__":
    main()
