"""Benchmarks of ollagraph against peers measured in the same run (`python bench/run.py`).

Every bench module has a `run(...) -> list[dict]` function; each dict is one table row made by
`row()`. A row compares ollagraph's number with a peer's number taken in the same process run,
as medians of repeated runs, and says whether it meets the row's target.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

# Row keys, in table order: what was measured, ollagraph's number, the peer's, their unit, the
# ratio (defined per row: see `better`), the target, whether it passed, and a free note.
ROW_KEYS = ("bench", "what", "ours", "peer", "unit", "ratio", "target", "passed", "note")


def median(values: Sequence[float]) -> float:
    """The median of repeated measurements."""
    return float(statistics.median(values))


def row(
    bench: str,
    what: str,
    ours: float,
    peer: float,
    unit: str,
    *,
    better: str,
    target: float | None,
    extra_pass: bool = True,
    target_text: str | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One table row; the ratio is always ollagraph / peer.

    `better="lower"` (times): passes when ratio <= target. `better="higher"` (rates): passes when
    ratio >= target. `extra_pass` folds in an absolute target (e.g. start-up <= 0.25 s). With no
    target the row is reported only (`passed` is None).
    """
    ratio = ours / peer if peer else float("inf")
    symbol = "≤" if better == "lower" else "≥"
    if target is None:
        return {
            **dict.fromkeys(ROW_KEYS),
            **{"bench": bench, "what": what, "ours": ours, "peer": peer, "unit": unit},
            **{"ratio": ratio, "target": target_text or "report only", "note": note},
        }
    ok = ratio <= target if better == "lower" else ratio >= target
    return {
        "bench": bench,
        "what": what,
        "ours": ours,
        "peer": peer,
        "unit": unit,
        "ratio": ratio,
        "target": target_text or f"{symbol} {target:g}×",
        "passed": bool(ok and extra_pass),
        "note": note,
    }
