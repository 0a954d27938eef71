"""The bundled Quackers & Co. sample: a deterministic, consistent database and matching docs."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from ollagraph.data import build_sample, sample_database, sample_docs_dir
from ollagraph.data.build_sample import SAMPLE_VERSION, build

TABLES = {
    # table: (key columns, fewest rows, most rows)
    "ducks": ("duck_id", 50, 70),
    "customers": ("customer_id", 400, 600),
    "orders": ("order_id", 2500, 3500),
    "order_items": ("order_id, duck_id", 5500, 8500),
    "reviews": ("review_id", 600, 1000),
}


@pytest.fixture(scope="module")
def db_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "shop.duckdb"
    build(path)
    return path


@pytest.fixture
def db(db_file: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    conn = duckdb.connect(str(db_file), read_only=True)
    yield conn
    conn.close()


def scalar(conn: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def digest(path: Path) -> dict[str, str]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return {
            table: hashlib.sha256(
                repr(conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()).encode()
            ).hexdigest()
            for table, (key, _, _) in TABLES.items()
        }


def test_building_twice_gives_identical_tables(db_file: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.duckdb"
    build(again)
    assert digest(again) == digest(db_file)


def test_expected_tables_and_row_counts(db: duckdb.DuckDBPyConnection) -> None:
    names = {
        row[0]
        for row in db.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT internal"
        ).fetchall()
    }
    assert names == set(TABLES)
    for table, (_, fewest, most) in TABLES.items():
        count = scalar(db, f"SELECT count(*) FROM {table}")
        assert isinstance(count, int) and fewest <= count <= most, (table, count)
    assert scalar(db, "SELECT count(*) FROM ducks") == 60


def test_every_table_and_column_has_a_comment(db: duckdb.DuckDBPyConnection) -> None:
    tables = db.execute(
        "SELECT table_name FROM duckdb_tables() WHERE NOT internal AND comment IS NULL"
    ).fetchall()
    columns = db.execute(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE NOT internal AND comment IS NULL"
    ).fetchall()
    assert tables == [] and columns == []


def test_column_types(db: duckdb.DuckDBPyConnection) -> None:
    types = dict(
        db.execute(
            "SELECT table_name || '.' || column_name, data_type FROM duckdb_columns()"
        ).fetchall()
    )
    assert types["ducks.price"] == "DECIMAL(6,2)"
    assert types["ducks.launched"] == "DATE"
    assert types["orders.ordered_at"] == "TIMESTAMP"
    assert types["order_items.unit_price"] == "DECIMAL(6,2)"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM order_items i ANTI JOIN orders o USING (order_id)",
        "SELECT count(*) FROM order_items i ANTI JOIN ducks d USING (duck_id)",
        "SELECT count(*) FROM orders o ANTI JOIN customers c USING (customer_id)",
        "SELECT count(*) FROM orders o ANTI JOIN order_items i USING (order_id)",
        "SELECT count(*) FROM reviews r ANTI JOIN ducks d USING (duck_id)",
        "SELECT count(*) FROM reviews r ANTI JOIN customers c USING (customer_id)",
    ],
)
def test_referential_consistency(db: duckdb.DuckDBPyConnection, sql: str) -> None:
    assert scalar(db, sql) == 0


def test_order_totals_equal_the_sum_of_their_items(db: duckdb.DuckDBPyConnection) -> None:
    mismatches = scalar(
        db,
        """
        SELECT count(*) FROM orders o
        JOIN (SELECT order_id, sum(quantity * unit_price) AS items FROM order_items GROUP BY 1) s
          USING (order_id)
        WHERE o.total <> s.items
        """,
    )
    assert mismatches == 0


def test_orders_follow_the_shops_rules(db: duckdb.DuckDBPyConnection) -> None:
    # Orders span 2024-2025 and come after the customer signed up.
    assert str(scalar(db, "SELECT min(ordered_at)::DATE FROM orders")) == "2024-01-01"
    assert scalar(db, "SELECT max(ordered_at) < TIMESTAMP '2026-01-01' FROM orders") is True
    assert scalar(db, "SELECT count(*) FROM orders JOIN customers USING (customer_id) "
                      "WHERE ordered_at::DATE < signed_up") == 0  # fmt: skip
    # Every status occurs; delivery dates exactly on delivered and returned orders.
    statuses = {row[0] for row in db.execute("SELECT DISTINCT status FROM orders").fetchall()}
    assert statuses == {"shipped", "delivered", "returned", "cancelled"}
    assert scalar(db, "SELECT count(*) FROM orders WHERE (delivered_on IS NOT NULL) "
                      "<> (status IN ('delivered', 'returned'))") == 0  # fmt: skip
    assert scalar(db, "SELECT count(*) FROM orders WHERE delivered_on <= ordered_at::DATE") == 0
    # Next Day and Collect are UK only.
    assert scalar(db, "SELECT count(*) FROM orders JOIN customers USING (customer_id) "
                      "WHERE shipping_method IN ('Next Day', 'Collect') "
                      "AND country <> 'United Kingdom'") == 0  # fmt: skip
    # Ducks are sold only after launch; Holiday ducks only in November and December.
    assert scalar(db, "SELECT count(*) FROM order_items JOIN orders USING (order_id) "
                      "JOIN ducks USING (duck_id) WHERE ordered_at::DATE < launched "
                      "OR (collection = 'Holiday' AND month(ordered_at) < 11)") == 0  # fmt: skip
    # UK Standard shipping is free from £40.
    assert scalar(db, "SELECT count(*) FROM orders JOIN customers USING (customer_id) "
                      "WHERE country = 'United Kingdom' AND shipping_method = 'Standard' "
                      "AND (shipping_fee = 0) <> (total >= 40)") == 0  # fmt: skip


def test_limited_editions_match_the_holiday_note(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute(
        """
        SELECT d.name, d.stock, coalesce(sum(i.quantity) FILTER (o.status <> 'cancelled'), 0),
               coalesce(max(i.quantity), 0)
        FROM ducks d LEFT JOIN order_items i USING (duck_id) LEFT JOIN orders o USING (order_id)
        WHERE d.name IN ('Aurora', 'Frosty Feathers', 'Nutcracker Quack')
        GROUP BY ALL
        """
    ).fetchall()
    assert len(rows) == 3
    for _, stock, sold, most_per_order in rows:
        assert stock + sold == build_sample.LIMITED_RUN == 200
        assert sold > 0 and most_per_order <= 2


def test_reviews_come_from_customers_who_received_the_duck(db: duckdb.DuckDBPyConnection) -> None:
    unearned = scalar(
        db,
        """
        SELECT count(*) FROM reviews r
        WHERE NOT EXISTS (
            SELECT 1 FROM orders o JOIN order_items i USING (order_id)
            WHERE o.customer_id = r.customer_id AND i.duck_id = r.duck_id
              AND o.delivered_on IS NOT NULL AND o.delivered_on <= r.reviewed_at::DATE)
        """,
    )
    assert unearned == 0
    assert scalar(db, "SELECT count(*) - count(DISTINCT (customer_id, duck_id)) FROM reviews") == 0


def test_data_has_a_shape_worth_asking_about(db: duckdb.DuckDBPyConnection) -> None:
    best = scalar(
        db,
        "SELECT d.name FROM order_items JOIN ducks d USING (duck_id) JOIN orders USING (order_id) "
        "WHERE status <> 'cancelled' GROUP BY ALL ORDER BY sum(quantity) DESC LIMIT 1",
    )
    assert best == "Captain Quack"
    biggest = scalar(db, "SELECT country FROM customers GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
    assert biggest == "United Kingdom"
    december, june = db.execute(
        "SELECT count(*) FILTER (month(ordered_at) = 12), count(*) FILTER (month(ordered_at) = 6) "
        "FROM orders"
    ).fetchall()[0]
    assert december > 1.5 * june
    sold_out = {row[0] for row in db.execute("SELECT name FROM ducks WHERE stock = 0").fetchall()}
    assert sold_out == {"Midnight Mallard", "Rugby Ron", "Wizard Waddles"}


def test_holiday_note_figures_match_the_database(db: duckdb.DuckDBPyConnection) -> None:
    sold_2024 = scalar(
        db,
        "SELECT sum(quantity) FROM order_items JOIN orders USING (order_id) "
        "JOIN ducks USING (duck_id) WHERE collection = 'Holiday' AND status <> 'cancelled' "
        "AND year(ordered_at) = 2024",
    )
    note = (sample_docs_dir() / "holiday-2025.md").read_text(encoding="utf-8")
    assert f"**{sold_2024} Holiday ducks**" in note


def test_shipping_doc_lists_every_fee_of_the_builder() -> None:
    text = (sample_docs_dir() / "shipping.md").read_text(encoding="utf-8")
    for (region, method), (fee, free_from, fewest, most) in build_sample.SHIPPING.items():
        row = next(
            line for line in text.splitlines() if line.startswith(f"| {region} | {method} |")
        )
        assert (f"£{fee}" if fee else "free") in row
        if free_from is not None:
            assert f"£{free_from}" in row
        if fewest != most:
            assert f"{fewest}–{most} working days" in row


def test_prices_in_the_docs_exist_in_the_catalogue(db: duckdb.DuckDBPyConnection) -> None:
    prices = {row[0] for row in db.execute("SELECT DISTINCT price FROM ducks").fetchall()}
    text = (sample_docs_dir() / "collections.md").read_text(encoding="utf-8")
    for low, high in re.findall(r"£(\d+\.\d\d)–£(\d+\.\d\d)", text):
        assert Decimal(low) in prices and Decimal(high) in prices


def test_sample_docs_dir_holds_the_markdown_documents() -> None:
    docs = sorted(sample_docs_dir().glob("*.md"))
    assert 8 <= len(docs) <= 12
    for doc in docs:
        words = len(doc.read_text(encoding="utf-8").split())
        assert 300 <= words <= 900, (doc.name, words)


def test_each_doc_mentions_a_duck_or_collection_from_the_database(
    db: duckdb.DuckDBPyConnection,
) -> None:
    names = {row[0] for row in db.execute("SELECT name FROM ducks").fetchall()}
    collections = {row[0] for row in db.execute("SELECT DISTINCT collection FROM ducks").fetchall()}
    for doc in sample_docs_dir().glob("*.md"):
        text = doc.read_text(encoding="utf-8")
        assert any(name in text for name in names | collections), doc.name


def test_sample_database_builds_once_then_reuses_the_file(
    isolated_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = sample_database()
    assert path == isolated_state / "sample" / f"shop-{SAMPLE_VERSION}.duckdb"
    assert path.is_file()
    stamp = path.stat().st_mtime_ns

    def must_not_build(path: Path) -> None:
        raise AssertionError("sample_database rebuilt an existing file")

    monkeypatch.setattr(build_sample, "build", must_not_build)
    assert sample_database() == path
    assert path.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_build_replaces_an_existing_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    path.write_text("not a database")
    build(path)
    with duckdb.connect(str(path), read_only=True) as conn:
        assert scalar(conn, "SELECT count(*) FROM ducks") == 60
    assert [p.name for p in tmp_path.iterdir()] == ["shop.duckdb"]


def test_script_writes_the_database(tmp_path: Path) -> None:
    out = tmp_path / "cli.duckdb"
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    done = subprocess.run(
        [sys.executable, "-m", "ollagraph.data.build_sample", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.is_file()


def test_importing_the_package_loads_nothing_heavy() -> None:
    code = (
        "import sys, ollagraph.data; "
        "print(sorted(m for m in ('duckdb', 'pyarrow', 'ollagraph.data.build_sample') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
