"""The face store: a real DuckDB file in tmp_path, vectors built by hand (no model needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ollagraph.agents.errors import ToolError
from ollagraph.agents.workers.faces import Face
from ollagraph.tools.face_store import FaceStore, SimilarFace


def unit(values: list[float]) -> tuple[float, ...]:
    array = np.asarray(values, dtype=np.float64)
    return tuple(float(v) for v in array / np.linalg.norm(array))


def face(values: list[float], box: tuple[int, int, int, int] = (1, 2, 30, 40)) -> Face:
    return Face(box=box, embedding=unit(values), score=0.9)


def cosine_distance(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x, y = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    return float(1.0 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def test_round_trip_orders_by_cosine_distance_and_limits_to_k(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    faces = [face(rng.normal(size=16).tolist(), (i, i + 1, 10 + i, 20 + i)) for i in range(12)]
    with FaceStore(tmp_path / "faces.duckdb") as store:
        first = store.add("a.jpg", faces[:5], "m")
        second = store.add("b.jpg", faces[5:], "m")
        assert len(set(first + second)) == 12
        assert store.count() == 12
        assert store.dim == 16

        query = faces[8].embedding
        found = store.find_similar(query, k=4)
        assert len(found) == 4
        assert isinstance(found[0], SimilarFace)
        assert found[0].id == second[3]
        assert found[0].source == "b.jpg"
        assert found[0].box == faces[8].box
        assert found[0].distance == pytest.approx(0.0, abs=1e-6)

        expected = sorted(
            (cosine_distance(query, f.embedding), id_)
            for f, id_ in zip(faces, first + second, strict=True)
        )[:4]
        assert [s.id for s in found] == [id_ for _, id_ in expected]
        assert [s.distance for s in found] == pytest.approx([d for d, _ in expected], abs=1e-5)
        assert len(store.find_similar(query, k=50)) == 12


def test_search_can_keep_to_one_model(tmp_path: Path) -> None:
    with FaceStore(tmp_path / "faces.duckdb") as store:
        (a,) = store.add("x.png", [face([1, 0, 0])], "model-a")
        (b,) = store.add("y.png", [face([1, 0.1, 0])], "model-b")
        assert [s.id for s in store.find_similar([1, 0, 0], k=5)] == [a, b]
        assert [s.id for s in store.find_similar([1, 0, 0], k=5, model="model-b")] == [b]
        assert store.find_similar([1, 0, 0], model="other") == []
        assert store.count(model="model-a") == 1


def test_a_mismatched_dimension_is_a_clear_error(tmp_path: Path) -> None:
    with FaceStore(tmp_path / "faces.duckdb") as store:
        store.add("x.png", [face([1, 2, 3, 4])], "m")
        with pytest.raises(ToolError, match=r"3-dimensional embedding.*4-dimensional"):
            store.add("y.png", [face([1, 2, 3])], "other")
        with pytest.raises(ToolError, match=r"has 5 dimensions.*4-dimensional"):
            store.find_similar([1, 2, 3, 4, 5])
        assert store.count() == 1  # the failed add wrote nothing


def test_one_bad_face_rejects_the_whole_add(tmp_path: Path) -> None:
    with FaceStore(tmp_path / "faces.duckdb") as store:
        store.add("x.png", [face([1, 0])], "m")
        bad = Face(box=(0, 0, 1, 1), embedding=(float("nan"), 1.0), score=1.0)
        with pytest.raises(ToolError, match="NaN"):
            store.add("y.png", [face([0, 1]), bad], "m")
        assert store.count() == 1


def test_the_store_persists_and_reads_its_dimension_back(tmp_path: Path) -> None:
    path = tmp_path / "faces.duckdb"
    with FaceStore(path) as store:
        ids = store.add("x.png", [face([3, 4]), face([4, 3])], "m")
    assert path.is_file()
    with FaceStore(path) as store:
        assert store.count() == 2
        assert store.dim == 2
        more = store.add("y.png", [face([0, 1])], "m")
        assert more[0] not in ids
        with pytest.raises(ToolError, match="2-dimensional"):
            store.add("z.png", [face([1, 2, 3])], "m")
        assert store.find_similar([3, 4], k=1)[0].id == ids[0]


def test_an_empty_store_answers_without_a_table(tmp_path: Path) -> None:
    store = FaceStore(tmp_path / "faces.duckdb")
    assert store.count() == 0
    assert store.find_similar([0.1, 0.2]) == []
    assert store.add("none.png", [], "m") == []
    assert store.dim is None
    store.close()
    store.close()  # closing twice is fine
