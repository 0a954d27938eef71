"""A DuckDB table of face embeddings, searched by cosine distance.

`FaceStore(path)` keeps one table, `faces(id, source, x, y, w, h, model, embedding FLOAT[dim])`,
created by the first `add` with the size of its first embedding. `find_similar` is one SQL query
ordering by `array_cosine_distance` (DuckDB core, no extension). Vectors reach DuckDB as an Arrow
table on insert and as a SQL literal in a search: binding a Python list of 512 floats as a
parameter costs ~35 ms each in DuckDB 1.3, against ~3 ms to parse the literal.

The database opens on first use (through `ollagraph.tools.duck.connect`, offline) and a store is
used from one thread at a time (a lock guards its connection).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from ollagraph.agents.errors import ToolError
from ollagraph.tools.duck import connect, vector_literal

if TYPE_CHECKING:
    import duckdb

    from ollagraph.agents.workers.faces import Face

_ARRAY_TYPE = re.compile(r"^FLOAT\[(\d+)\]$", re.IGNORECASE)


@dataclass(frozen=True)
class SimilarFace:
    """A stored face close to a query.

    Attributes:
        id: The face's row id.
        source: Where the face came from (the image path or name given to `add`).
        box: x, y, width, height of the face in that image.
        distance: Cosine distance to the query (0 = same direction, 2 = opposite).
    """

    id: int
    source: str
    box: tuple[int, int, int, int]
    distance: float


class FaceStore:
    """Face embeddings in a DuckDB file.

    Args:
        path: The database file (created on first add).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._dim: int | None = None
        self._lock = threading.RLock()

    def __enter__(self) -> FaceStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def dim(self) -> int | None:
        """The embedding size of the stored faces; None while the store is empty."""
        with self._lock:
            self._connection()
            return self._dim

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._conn is None:
            self._conn = connect(self.path, read_only=False)
            row = self._conn.execute(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'faces' AND column_name = 'embedding'"
            ).fetchone()
            if row is not None:
                match = _ARRAY_TYPE.match(str(row[0]))
                if match is None:
                    raise ToolError(
                        f"{self.path} has a `faces` table whose embedding column is {row[0]}, "
                        "not FLOAT[n]: it was not written by the face store.",
                        hint="Use another file for the face store.",
                    )
                self._dim = int(match.group(1))
        return self._conn

    def _check(self, embedding: Sequence[float], what: str) -> list[float]:
        values = [float(v) for v in embedding]
        if self._dim is not None and len(values) != self._dim:
            raise ToolError(
                f"{what} has {len(values)} dimensions but the face store {self.path} holds "
                f"{self._dim}-dimensional embeddings: they come from different models.",
                hint="Use the model the store was built with, or another store file.",
            )
        if not values or not all(math.isfinite(v) for v in values):
            raise ToolError(f"{what} is empty or holds NaN/infinite values.")
        return values

    def add(self, source: str, faces: Sequence[Face], model: str) -> list[int]:
        """Store the faces found in one image, in one transaction.

        Args:
            source: Where the faces came from (an image path or name).
            faces: The faces, with their boxes and embeddings.
            model: The embedding model's name (search compares only faces of one model).

        Returns:
            The new rows' ids, in the order of `faces`.

        Raises:
            ToolError: An embedding's size differs from the stored ones, or is not finite.
        """
        import numpy as np
        import pyarrow as pa

        if not faces:
            return []
        with self._lock:
            conn = self._connection()
            if self._dim is None:
                dim = len(faces[0].embedding)
                if dim < 1:
                    raise ToolError("A face embedding is empty.")
            else:
                dim = self._dim
            for number, face in enumerate(faces, 1):
                if len(face.embedding) != dim:
                    raise ToolError(
                        f"Face {number} of {source} has a {len(face.embedding)}-dimensional "
                        f"embedding but the face store {self.path} holds {dim}-dimensional ones: "
                        "they come from different models.",
                        hint="Use the model the store was built with, or another store file.",
                    )
            vectors = np.asarray([face.embedding for face in faces], dtype=np.float32)
            if not np.isfinite(vectors).all():
                raise ToolError(f"An embedding of {source} holds NaN or infinite values.")
            conn.begin()
            try:
                if self._dim is None:
                    conn.execute("CREATE SEQUENCE IF NOT EXISTS face_ids START 1")
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS faces (id BIGINT PRIMARY KEY, "
                        "source VARCHAR, x INTEGER, y INTEGER, w INTEGER, h INTEGER, "
                        f"model VARCHAR, embedding FLOAT[{dim}])"
                    )
                ids = sorted(
                    int(row[0])
                    for row in conn.execute(
                        "SELECT nextval('face_ids') FROM range(?)", [len(faces)]
                    ).fetchall()
                )
                boxes = [tuple(int(v) for v in face.box) for face in faces]
                incoming = pa.table(
                    {
                        "id": pa.array(ids, pa.int64()),
                        "x": pa.array([b[0] for b in boxes], pa.int32()),
                        "y": pa.array([b[1] for b in boxes], pa.int32()),
                        "w": pa.array([b[2] for b in boxes], pa.int32()),
                        "h": pa.array([b[3] for b in boxes], pa.int32()),
                        "embedding": pa.FixedSizeListArray.from_arrays(
                            pa.array(vectors.reshape(-1)), dim
                        ),
                    }
                )
                conn.register("face_store_incoming", incoming)
                try:
                    conn.execute(
                        "INSERT INTO faces SELECT id, ?, x, y, w, h, ?, "
                        f"embedding::FLOAT[{dim}] FROM face_store_incoming",
                        [source, model],
                    )
                finally:
                    conn.unregister("face_store_incoming")
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            self._dim = dim
            return ids

    def find_similar(
        self, embedding: Sequence[float], k: int = 5, model: str | None = None
    ) -> list[SimilarFace]:
        """The `k` stored faces nearest to `embedding` by cosine distance, nearest first.

        Args:
            embedding: The query face's embedding.
            k: How many faces to return.
            model: Only faces embedded by this model (None: all).

        Returns:
            Up to `k` faces (empty when the store is empty).

        Raises:
            ToolError: The embedding's size differs from the stored ones, or is not finite.
        """
        with self._lock:
            conn = self._connection()
            values = self._check(embedding, "The query embedding")
            if self._dim is None or k < 1:
                return []
            vector = vector_literal(values, self._dim)
            where, params = ("WHERE model = ? ", [model]) if model is not None else ("", [])
            rows = conn.execute(
                "SELECT id, source, x, y, w, h, "
                f"array_cosine_distance(embedding, {vector}) AS distance FROM faces "
                f"{where}ORDER BY distance, id LIMIT ?",
                [*params, int(k)],
            ).fetchall()
        return [
            SimilarFace(
                id=int(row[0]),
                source=str(row[1]),
                box=(int(row[2]), int(row[3]), int(row[4]), int(row[5])),
                distance=float(row[6]),
            )
            for row in rows
        ]

    def count(self, model: str | None = None) -> int:
        """How many faces are stored (of `model` only, when given)."""
        with self._lock:
            conn = self._connection()
            if self._dim is None:
                return 0
            if model is None:
                row = conn.execute("SELECT count(*) FROM faces").fetchone()
            else:
                row = conn.execute("SELECT count(*) FROM faces WHERE model = ?", [model]).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Close the database (the next call opens it again)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._dim = None


__all__ = ["FaceStore", "SimilarFace"]
