"""Bundled sample data: the Quackers & Co. shop database and its markdown documents.

Quackers & Co. is a small (fictional) Bristol shop that sells rubber ducks online. The database
(`sample_database`) holds its catalogue, customers, orders and reviews; the documents
(`sample_docs_dir`) hold its policies, guides and stories. Both describe the same shop, so some
questions need one, the other, or both.

Importing this package is cheap: the builder (and duckdb) load only when the database is built,
so `python -m ollagraph.data.build_sample OUT.duckdb` also runs cleanly.
"""

from __future__ import annotations

from pathlib import Path

from ollagraph.agents.paths import state_path

__all__ = ["sample_database", "sample_docs_dir"]


def sample_docs_dir() -> Path:
    """Return the folder of the bundled markdown documents."""
    return Path(__file__).resolve().parent / "docs"


def sample_database() -> Path:
    """Return the path of the sample shop database, building it on first use.

    The file lives in the state directory as `sample/shop-<SAMPLE_VERSION>.duckdb`, so a new
    builder version gets a fresh file. Building replaces the file atomically, so two processes
    that race to build it are both safe.

    Raises:
        StateDirError: The state directory cannot be created or written.
    """
    from ollagraph.data.build_sample import SAMPLE_VERSION, build

    path = state_path("sample", f"shop-{SAMPLE_VERSION}.duckdb")
    if not path.exists():
        build(path)
    return path
