"""Run ollagraph's benchmarks against their peers and print one markdown table.

    python bench/run.py                       # everything, full sizes (several minutes)
    python bench/run.py --quick               # tiny sizes, one repeat: checks the code runs
    python bench/run.py --only startup,orchestration --json results.json

Benches: `startup` (`agent --help` vs `llm --help`), `orchestration` (per tool step: ollagraph's
graph vs LangGraph's prebuilt tool loop, and vs a minimal hand-rolled one), `engine` (embedded
engine over HTTP + ChatOllama vs llama-cpp-python direct; constrained decoding), `workers`
(batched vs per-request torch worker), `vector` (ollagraph's DuckDB vector store vs llama-index's
stock one; `bench/vector_store.py`).
Each row is ollagraph's number, the peer's number measured in the same run, their ratio
(ollagraph / peer), the target and pass/fail. Timings on a shared machine are noisy: compare
ratios, not raw numbers across runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BENCHES = ("startup", "orchestration", "engine", "workers", "vector")


def _number(value: Any) -> str:
    if not isinstance(value, int | float):
        return str(value)
    if not math.isfinite(value):
        return "∞" if value > 0 else "n/a"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def table(rows: Sequence[dict[str, Any]]) -> str:
    """Render rows (see `bench.row`) as one markdown table."""
    lines = [
        "| bench | what | ollagraph | peer | unit | ratio | target | result |",
        "|---|---|---:|---:|---|---:|---|---|",
    ]
    notes = []
    for item in rows:
        passed = item.get("passed")
        result = "pass" if passed else ("fail" if passed is not None else "—")
        ratio = item.get("ratio")
        lines.append(
            f"| {item.get('bench', '')} | {item.get('what', '')} | {_number(item.get('ours'))} | "
            f"{_number(item.get('peer'))} | {item.get('unit', '')} | "
            f"{_number(ratio)}{'×' if isinstance(ratio, int | float) else ''} | "
            f"{item.get('target', '')} | {result} |"
        )
        if item.get("note"):
            notes.append(f"- {item.get('bench', '')}: {item['note']}")
    return "\n".join(lines + (["", *notes] if notes else []))


def _vector(quick: bool) -> list[dict[str, Any]]:
    path = Path(__file__).resolve().parent / "vector_store.py"
    if not path.exists():
        return [{"bench": "vector", "what": "bench/vector_store.py is not there yet", "note": ""}]
    spec = importlib.util.spec_from_file_location("bench.vector_store", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if quick:
        raw = module.run(sizes=[500], queries=5, repeats=1)
    else:
        raw = module.run(sizes=[10_000, 50_000], queries=100, repeats=3)
    rows: list[dict[str, Any]] = []
    for item in raw:
        rows.extend([item] if "bench" in item else _vector_rows(item))
    return rows


def _vector_rows(item: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows from one size of `bench/vector_store.py` (ollagraph's store vs stock)."""
    from bench import row

    size = int(item["size"])
    judged = size >= 50_000  # the target is for 50k chunks
    recall = float(item["ours_recall"])
    where = f"{size:,} chunks, 384-d; ollagraph's store vs stock DuckDBVectorStore"
    index = "in-memory matrix, exact" if item.get("ours_matrix") else "SQL scan"
    cold = (
        f"first query (cold: loads the in-memory matrix) at {size:,} chunks: ollagraph "
        f"{float(item['ours_cold_ms']):.0f} ms, stock {float(item['stock_cold_ms']):.0f} ms"
        if "ours_cold_ms" in item
        else ""
    )
    return [
        row(
            "vector",
            f"ingest chunks/s ({where})",
            float(item["ours_ingest"]),
            float(item["stock_ingest"]),
            "chunks/s",
            better="higher",
            target=1.0,
        ),
        row(
            "vector",
            f"query p50 latency ({where}; ours: {index}, recall@10 {recall:.3f} vs "
            f"{float(item['stock_recall']):.3f})",
            float(item["ours_p50_ms"]),
            float(item["stock_p50_ms"]),
            "ms",
            better="lower",
            target=0.2 if judged else None,
            extra_pass=recall >= 0.95,
            target_text="≤ 0.2× (≥ 5× faster) at recall@10 ≥ 0.95" if judged else None,
            note=cold,
        ),
        row(
            "vector",
            f"query p95 latency ({where})",
            float(item["ours_p95_ms"]),
            float(item["stock_p95_ms"]),
            "ms",
            better="lower",
            target=None,
        ),
    ]


def _runners(quick: bool) -> dict[str, Callable[[], list[dict[str, Any]]]]:
    def startup() -> list[dict[str, Any]]:
        from bench import startup as bench

        return bench.run(repeats=3) if quick else bench.run(repeats=15)

    def orchestration() -> list[dict[str, Any]]:
        from bench import orchestration as bench

        if quick:
            return bench.run(steps=2, repeats=1, real_tool=False)
        return bench.run(steps=10, repeats=15)

    def engine() -> list[dict[str, Any]]:
        from bench import engine as bench

        return bench.run(tokens=8, repeats=1) if quick else bench.run(tokens=128, repeats=5)

    def workers() -> list[dict[str, Any]]:
        from bench import workers as bench

        if quick:
            return bench.run(images=4, batch_size=2, tokens=2, hidden=32, layers=1, repeats=1)
        return bench.run()

    return {
        "startup": startup,
        "orchestration": orchestration,
        "engine": engine,
        "workers": workers,
        "vector": lambda: _vector(quick),
    }


def run(only: Sequence[str] = BENCHES, quick: bool = False) -> list[dict[str, Any]]:
    """Run the chosen benches in order and return all their rows.

    Args:
        only: Bench names out of `BENCHES`.
        quick: Tiny sizes and one repeat (a smoke test, not a measurement).
    """
    unknown = [name for name in only if name not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown bench {unknown}; choose from {', '.join(BENCHES)}")
    runners = _runners(quick)
    rows: list[dict[str, Any]] = []
    for name in only:
        started = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        rows.extend(runners[name]())
        print(f"[bench] {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run, print the table; exit 1 when a row fails its target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated benches")
    parser.add_argument("--json", dest="json_path", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    rows = run(only, quick=args.quick)
    print(f"\n{platform.processor() or platform.machine()}, Python {platform.python_version()}\n")
    print(table(rows))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 0 if all(r.get("passed") is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
