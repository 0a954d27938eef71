"""A corpus of hostile SQL for the sql_query tool, with the outcome each one must have.

Placeholders, filled in by the test: `{tmp}` (a folder beside the database), `{secret}` (a CSV file
outside the database whose content must never reach the model), `{secret_json}` (the same secret as
JSON), `{secret_dir}` (the folder holding them, also laid out as an `EXPORT DATABASE` folder whose
`schema.sql` carries the secret) and `{parquet}` (a Parquet file outside the database).

Outcomes:
- `refused`: the statement guard refuses it; nothing reaches the database.
- `blocked`: the guard lets it through (it is a SELECT); the connection refuses it (external access
  off, configuration locked, read-only, memory limit, ...).
- `ok`: it runs and returns something harmless.
- `timeout`: it would run (nearly) forever; the per-query timeout stops it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hostile:
    """One hostile statement and the outcome it must have.

    Attributes:
        sql: The statement (a template with the placeholders above).
        outcome: refused, blocked, ok or timeout.
        expect: Text the tool's message must contain (the kind it names, the engine's refusal).
    """

    sql: str
    outcome: str
    expect: str = ""


CORPUS: list[Hostile] = [
    # --- writes: DML and DDL ------------------------------------------------------------------
    Hostile("DROP TABLE ducks", "refused", "DROP"),
    Hostile("drop table if exists ducks cascade", "refused", "DROP"),
    Hostile("DELETE FROM ducks", "refused", "DELETE"),
    Hostile("DELETE FROM ducks WHERE id > 0 RETURNING *", "refused", "DELETE"),
    Hostile("TRUNCATE ducks", "refused", "DELETE"),
    Hostile("UPDATE ducks SET price = 0", "refused", "UPDATE"),
    Hostile("UPDATE ducks SET name = (SELECT 'x') WHERE true", "refused", "UPDATE"),
    Hostile("INSERT INTO ducks VALUES (99, 'Evil', 0.01)", "refused", "INSERT"),
    Hostile("INSERT OR REPLACE INTO ducks SELECT * FROM ducks", "refused", "INSERT"),
    Hostile("INSERT INTO ducks SELECT * FROM read_csv('{secret}')", "refused", "INSERT"),
    Hostile("CREATE TABLE evil AS SELECT 1 AS x", "refused", "CREATE"),
    Hostile("CREATE OR REPLACE TABLE ducks AS SELECT 1 AS id", "refused", "CREATE"),
    Hostile("CREATE TEMP TABLE t AS SELECT * FROM ducks", "refused", "CREATE"),
    Hostile("CREATE VIEW v AS SELECT * FROM ducks", "refused", "CREATE"),
    Hostile("CREATE INDEX idx ON ducks (id)", "refused", "CREATE"),
    Hostile("CREATE SEQUENCE seq", "refused", "CREATE"),
    Hostile("CREATE SCHEMA evil", "refused", "CREATE"),
    Hostile("CREATE MACRO pwn() AS 1", "refused", "CREATE"),
    Hostile("CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", "refused", "CREATE"),
    Hostile("CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", "refused", "CREATE"),
    Hostile("ALTER TABLE ducks ADD COLUMN owned BOOLEAN", "refused", "ALTER"),
    Hostile("ALTER TABLE ducks RENAME TO geese", "refused", "ALTER"),
    Hostile("COMMENT ON TABLE ducks IS 'pwned'", "refused", "ALTER"),
    # --- files, databases, extensions ---------------------------------------------------------
    Hostile("COPY ducks TO '{tmp}/out.csv'", "refused", "COPY"),
    Hostile(
        "COPY (SELECT * FROM ducks) TO '{tmp}/out.parquet' (FORMAT parquet)", "refused", "COPY"
    ),
    Hostile("COPY ducks FROM '{secret}'", "refused", "COPY"),
    Hostile("COPY FROM DATABASE shop TO memory", "refused", "exactly one SQL statement"),
    Hostile("EXPORT DATABASE '{tmp}/export'", "refused", "EXPORT"),
    Hostile("IMPORT DATABASE '{secret_dir}'", "refused", "could not parse"),
    Hostile("ATTACH '{tmp}/new.duckdb' AS other", "refused", "ATTACH"),
    Hostile("ATTACH '{secret}' AS s", "refused", "ATTACH"),
    Hostile("DETACH shop", "refused", "DETACH"),
    Hostile("INSTALL httpfs", "refused", "LOAD"),
    Hostile("FORCE INSTALL httpfs FROM core_nightly", "refused", "LOAD"),
    Hostile("LOAD httpfs", "refused", "LOAD"),
    Hostile("UPDATE EXTENSIONS", "refused", "UNKNOWN"),
    # --- settings and maintenance -------------------------------------------------------------
    Hostile("PRAGMA enable_profiling", "refused", "PRAGMA"),
    Hostile("PRAGMA memory_limit = '100GB'", "refused", "SET"),
    Hostile("PRAGMA threads = 64", "refused", "SET"),
    Hostile("SET enable_external_access = true", "refused", "SET"),
    Hostile("SET lock_configuration = false", "refused", "SET"),
    Hostile("SET memory_limit = '100GB'", "refused", "SET"),
    Hostile("RESET enable_external_access", "refused", "SET"),
    Hostile("SET VARIABLE x = 1", "refused", "SET"),
    Hostile("USE memory", "refused", "SET"),
    Hostile("CALL pragma_version()", "refused", "CALL"),
    Hostile("CHECKPOINT", "refused", "CALL"),
    Hostile("FORCE CHECKPOINT", "refused", "CALL"),
    Hostile("VACUUM", "refused", "VACUUM"),
    Hostile("ANALYZE", "refused", "VACUUM"),
    Hostile("BEGIN TRANSACTION", "refused", "TRANSACTION"),
    Hostile("ROLLBACK", "refused", "TRANSACTION"),
    Hostile("PREPARE p AS DELETE FROM ducks", "refused", "PREPARE"),
    Hostile("EXECUTE p", "refused", "EXECUTE"),
    # --- several statements, comments, case and whitespace tricks -----------------------------
    Hostile("SELECT 1; DROP TABLE ducks", "refused", "exactly one SQL statement"),
    Hostile("SELECT 1;DELETE FROM ducks;", "refused", "exactly one SQL statement"),
    Hostile("SELECT 1 --\n; DROP TABLE ducks", "refused", "exactly one SQL statement"),
    Hostile("SELECT ';'; DROP TABLE ducks -- ';", "refused", "exactly one SQL statement"),
    Hostile(
        "SELECT 1 /* ; */ ; UPDATE ducks SET price = 0", "refused", "exactly one SQL statement"
    ),
    Hostile("PIVOT ducks ON name USING sum(price)", "refused", "exactly one SQL statement"),
    Hostile("/* harmless */ DELETE /* really */ FROM ducks", "refused", "DELETE"),
    Hostile("-- just a comment\nDROP TABLE ducks", "refused", "DROP"),
    Hostile("dRoP tAbLe DuCkS", "refused", "DROP"),
    Hostile("DROP\u00a0TABLE ducks", "refused", "DROP"),
    Hostile("DELETE\u2003FROM\u2009ducks", "refused", "DELETE"),
    Hostile("DELETE\u2003FROM\u2028ducks", "refused", "could not parse"),
    Hostile("CREATE\u00a0PERSISTENT\u00a0SECRET s (TYPE s3)", "refused", "CREATE"),
    Hostile("\ufeffUPDATE ducks SET price = 0", "refused", "UPDATE"),
    # --- DML inside CTEs and EXPLAIN ----------------------------------------------------------
    Hostile("WITH d AS (DELETE FROM ducks RETURNING *) SELECT * FROM d", "refused", "parse"),
    Hostile("WITH x AS (SELECT 1) DELETE FROM ducks", "refused", "DELETE"),
    Hostile("WITH x AS (SELECT 99) INSERT INTO ducks (id) SELECT * FROM x", "refused", "INSERT"),
    Hostile("EXPLAIN ANALYZE DELETE FROM ducks", "refused", "DELETE"),
    Hostile("explain analyze /* x */ UPDATE ducks SET price = 0", "refused", "UPDATE"),
    Hostile("EXPLAIN (ANALYZE, FORMAT json) DROP TABLE ducks", "refused", "DROP"),
    Hostile("EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1", "refused", "CREATE"),
    Hostile("EXPLAIN ANALYZE COPY ducks TO '{tmp}/x.csv'", "refused", "COPY"),
    # --- reads of files outside the database (the connection must refuse) ---------------------
    Hostile("SELECT * FROM read_csv('{secret}')", "blocked", "disabled by configuration"),
    Hostile("SELECT * FROM read_csv_auto('/etc/passwd')", "blocked", "disabled by configuration"),
    Hostile("SELECT content FROM read_text('{secret}')", "blocked", "disabled by configuration"),
    Hostile("SELECT content FROM read_text('/etc/passwd')", "blocked", "disabled by configuration"),
    Hostile("SELECT * FROM read_blob('{secret}')", "blocked", "disabled by configuration"),
    Hostile("SELECT * FROM read_json('{secret_json}')", "blocked", "disabled by configuration"),
    Hostile("SELECT * FROM read_json_auto('{secret_json}')", "blocked", "disabled by"),
    Hostile("SELECT * FROM read_parquet('{parquet}')", "blocked", "disabled by configuration"),
    Hostile("SELECT * FROM parquet_metadata('{parquet}')", "blocked", "disabled by"),
    Hostile("SELECT * FROM sniff_csv('{secret}')", "blocked", "disabled by configuration"),
    Hostile("SELECT * FROM '{secret}'", "blocked", "disabled by configuration"),
    Hostile("FROM '{secret_json}'", "blocked", "disabled by configuration"),
    Hostile("SELECT * FROM '{parquet}' UNION ALL SELECT 'x'", "blocked", "disabled by"),
    Hostile("SELECT * FROM glob('*')", "blocked", "disabled by configuration"),
    Hostile("SELECT * FROM glob('{secret_dir}/**')", "blocked", "disabled by configuration"),
    Hostile("SELECT * FROM duckdb_extensions()", "blocked", "disabled by configuration"),
    Hostile("SELECT * FROM query('DELETE FROM ducks')", "blocked", "single SELECT"),
    Hostile("SELECT * FROM force_checkpoint()", "blocked", "Cannot FORCE CHECKPOINT"),
    Hostile("SELECT getenv('HOME')", "blocked", "getenv does not exist"),
    Hostile("SELECT list(range) FROM range(400000000)", "blocked", "Out of Memory"),
    # --- harmless reads that look alarming ----------------------------------------------------
    Hostile("SELECT current_setting('enable_external_access') AS v", "ok", "False"),
    Hostile("SELECT current_setting('lock_configuration') AS v", "ok", "True"),
    Hostile("SELECT name, value FROM duckdb_settings() WHERE name = 'memory_limit'", "ok", "MiB"),
    Hostile("SELECT * FROM checkpoint()", "ok", "no rows"),
    Hostile("SELECT COUNT(*) AS n FROM duckdb_secrets()", "ok", "| 0 |"),
    Hostile("SELECT 'DROP TABLE ducks; DELETE FROM ducks' AS s", "ok", "DROP TABLE"),
    Hostile("SELECT COUNT(*) FROM ducks -- ; DROP TABLE ducks", "ok", "| 25 |"),
    Hostile("SELECT * FROM query_table('ducks') LIMIT 1", "ok", "| 1 |"),
    # --- queries that never end ---------------------------------------------------------------
    Hostile("SELECT COUNT(*) FROM range(1000000000000)", "timeout"),
    Hostile("SELECT SUM(a.range * b.range) FROM range(100000000) a, range(100000000) b", "timeout"),
    Hostile(
        "SELECT COUNT(*) FROM ducks a, ducks b, ducks c, ducks d, ducks e, ducks f, ducks g, "
        "range(1000000) h",
        "timeout",
    ),
    Hostile(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r",
        "timeout",
    ),
    Hostile(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n FROM r) SELECT * FROM r LIMIT 3",
        "ok",
        "(3 rows)",
    ),
    Hostile(
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION SELECT n + 1 FROM r) SELECT max(n) FROM r",
        "timeout",
    ),
]
