"""Where worker models come from: paths, repo ids with revisions, the cache, offline errors.

The unreachable hub is a closed port on 127.0.0.1 named by HF_ENDPOINT (real sockets)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ollagraph.agents.errors import WorkerError
from ollagraph.agents.workers.sources import ModelSource, hub_reachable


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    hub_reachable.cache_clear()
    yield
    hub_reachable.cache_clear()


def test_repo_ids_and_revisions() -> None:
    source = ModelSource.parse("org/model@v1.0", cache_dir="/c")
    assert (source.name, source.revision, source.cache_dir) == ("org/model", "v1.0", "/c")
    assert ModelSource.parse(" org/model ").revision is None
    with pytest.raises(WorkerError, match="No model is set"):
        ModelSource.parse("  ")


def test_a_local_folder_is_loaded_from_disk_only(tmp_path: Path) -> None:
    folder = tmp_path / "my@model"  # an @ in an existing path is not a revision
    folder.mkdir()
    source = ModelSource.parse(str(folder))
    assert source.local_path == folder and source.revision is None
    assert source.pretrained_args() == (str(folder), {"local_files_only": True})


def test_hub_arguments_with_token_and_an_unreachable_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    name, kwargs = ModelSource.parse("org/model@main", cache_dir="/cache").pretrained_args()
    assert name == "org/model"
    assert kwargs == {
        "local_files_only": True,  # the hub does not answer: use the cache only, fail fast
        "revision": "main",
        "cache_dir": "/cache",
        "token": "hf_secret",
    }
    assert hub_reachable() is False


def test_a_proxy_skips_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert hub_reachable() is True
    assert ModelSource.parse("org/model").pretrained_args()[1]["local_files_only"] is False


def test_load_errors_become_worker_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    source = ModelSource.parse("org/missing", local_files_only=True)
    with pytest.raises(WorkerError) as info, source.loading("image-to-text"):
        raise OSError("We couldn't connect to the hub")
    assert "not in the local Hugging Face cache and offline mode is on" in info.value.message
    assert "hf download org/missing" in (info.value.hint or "")
    missing = ModelSource.parse("./nope/model")
    with pytest.raises(WorkerError) as info, missing.loading("face-embedding"):
        pass  # pragma: no cover - the missing path is refused before the body runs
    assert info.value.message == "Model path ./nope/model for face-embedding does not exist."


def test_a_damaged_local_folder_names_the_folder(tmp_path: Path) -> None:
    source = ModelSource.parse(str(tmp_path))
    with pytest.raises(WorkerError) as info, source.loading("image-upscale"):
        raise ValueError("no config.json")
    assert (
        info.value.message == f"Cannot load the image-upscale model from {tmp_path}: no config.json"
    )
