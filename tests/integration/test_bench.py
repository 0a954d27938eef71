"""Smoke tests of `bench/`: every bench runs in a tiny quick mode, so the code cannot rot.

The numbers here mean nothing (one repeat, tiny sizes, a shared machine); the tests check that
each bench produces its rows with positive numbers and ratios, and that `bench/run.py` prints one
table and writes JSON. The start-up bench runs against `python -c pass` as its peer instead of
`llm --help`, so the test needs no PyPI access to install `llm`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import engine, orchestration, startup, workers
from bench import run as bench_run

pytestmark = pytest.mark.integration


def check_rows(rows: list[dict[str, Any]], bench: str, count: int) -> None:
    assert len(rows) == count
    for item in rows:
        assert item["bench"] == bench
        for key in ("ours", "peer", "ratio"):
            assert isinstance(item[key], float) and math.isfinite(item[key]) and item[key] > 0
        assert item["ratio"] == pytest.approx(item["ours"] / item["peer"])
        assert item["passed"] in (True, False, None) and item["target"]


def test_startup_against_a_trivial_peer() -> None:
    rows = startup.run(repeats=1, peer=[sys.executable, "-c", "pass"], peer_name="python -c pass")
    check_rows(rows, "startup", 1)
    assert "agent --help" in rows[0]["what"] and rows[0]["unit"] == "s"


def test_orchestration_runs_both_loops_with_the_same_script() -> None:
    rows = orchestration.run(steps=2, repeats=1, real_tool=True)
    check_rows(rows, "orchestration", 6)
    whats = [r["what"] for r in rows]
    assert ["built-in path" in w for w in whats] == [True, False, False] * 2
    assert ["user tool" in w for w in whats] == [False, True, False] * 2
    assert ["sql_query" in w for w in whats] == [False, False, True] * 2
    assert all("prebuilt loop" in w for w in whats[:3])
    assert all("minimal hand-rolled" in w for w in whats[3:])
    assert [r["passed"] is None for r in rows] == [False] * 3 + [True] * 3  # minimal: reported


def test_orchestration_restores_the_tool_registry() -> None:
    from ollagraph.tools.registry import TOOLS, tool_specs
    from ollagraph.tools.web import web_search

    orchestration.run(steps=1, repeats=1, real_tool=False)
    assert TOOLS["web_search"] is web_search
    assert tool_specs(["web_search"])[0].func is web_search


def test_engine_over_http_and_llama_cpp_direct() -> None:
    rows = engine.run(tokens=6, repeats=1)
    check_rows(rows, "engine", 4)
    assert [r["unit"] for r in rows] == ["tok/s", "ms", "ms", "tok/s"]
    assert "a new question each request" in rows[2]["what"]
    assert rows[3]["passed"] is None  # constrained decoding is reported, not judged


@pytest.mark.torch
def test_workers_rows() -> None:
    rows = workers.run(images=2, batch_size=2, tokens=2, hidden=32, layers=1, repeats=1)
    check_rows(rows, "workers", 1)


def test_run_prints_one_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rows.json"
    status = bench_run.main(["--quick", "--only", "orchestration", "--json", str(out)])
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())
    check_rows(rows, "orchestration", 4)  # quick: two stand-in cases, two peers
    assert status == (0 if all(r["passed"] is not False for r in rows) else 1)
    lines = [line for line in printed.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| bench | what | ollagraph | peer |") and len(lines) == 6
    assert all(line.startswith("| orchestration |") for line in lines[2:])
    assert [line.rstrip().endswith(("pass |", "fail |")) for line in lines[2:]] == [
        True,
        True,
        False,
        False,
    ]


def test_unknown_bench_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown bench"):
        bench_run.run(["nope"])


@pytest.mark.skipif(
    not (Path(bench_run.__file__).parent / "vector_store.py").exists(),
    reason="bench/vector_store.py is not there",
)
def test_vector_rows_through_run() -> None:
    rows = bench_run.run(["vector"], quick=True)
    check_rows(rows, "vector", 3)
