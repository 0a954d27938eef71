"""The SQL guard: is one SQL text a read, a write that needs approval, or refused, and why.

The check uses DuckDB's own parser (`extract_statements`), so comments, case, unicode whitespace
and string literals are read exactly as the engine would read them. The parser runs on a private
in-memory connection with external access off: parsing `IMPORT DATABASE 'dir'` reads the files in
`dir`, and on an ordinary connection their content can surface in the parse error.

Reads are one statement of kind SELECT (which covers WITH … SELECT, FROM …, VALUES, TABLE,
DESCRIBE, SHOW, SUMMARIZE and PRAGMA table_info) or an EXPLAIN of one. Writes are INSERT, UPDATE,
DELETE (and TRUNCATE), CREATE/DROP of a table, view, index, sequence or schema, ALTER and COMMENT
ON; they run only when the user enabled writes and approved the statement. Everything else (COPY,
ATTACH, DETACH, INSTALL, LOAD, PRAGMA, SET, RESET, CALL, EXPORT, IMPORT, CHECKPOINT, VACUUM,
transactions, secrets, macros, several statements) is refused. The connection the statement runs on
is the second line of defence (read-only, external access off, configuration locked).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ollagraph.agents.errors import DatabaseError

if TYPE_CHECKING:
    import duckdb

READ_KINDS = "SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN"
WRITE_KINDS = (
    "INSERT, UPDATE, DELETE, CREATE/DROP of a TABLE, VIEW, INDEX, SEQUENCE or SCHEMA, ALTER, "
    "COMMENT ON"
)
# The object kinds a CREATE or DROP may name when writes are allowed (never SECRET, MACRO, ...).
WRITABLE_OBJECTS = frozenset({"TABLE", "VIEW", "INDEX", "SEQUENCE", "SCHEMA"})
_CREATE_MODIFIERS = frozenset({"OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE"})
_WORD = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class Verdict:
    """What one SQL text is and whether it may run.

    Attributes:
        kind: The statement kind in DuckDB's words (SELECT, DELETE, COPY, ...), or EMPTY, INVALID
            (does not parse) or MULTIPLE (more than one statement). For EXPLAIN, the kind of
            the statement it explains.
        allowed: True for a read that may run on the read-only connection.
        write: True for a write that may run when writes are enabled and the user approves it.
        reason: Why it is refused, written for the model (empty when `allowed`).
    """

    kind: str
    allowed: bool
    write: bool
    reason: str


_parser_conn: duckdb.DuckDBPyConnection | None = None
_parser_lock = threading.Lock()


def _statements(text: str) -> list[duckdb.Statement]:
    """Parse `text` on a private connection that cannot touch files (see the module docstring)."""
    import duckdb

    global _parser_conn
    with _parser_lock:
        if _parser_conn is None:
            try:
                conn = duckdb.connect(
                    ":memory:",
                    config={
                        "enable_external_access": False,
                        "autoinstall_known_extensions": False,
                        "autoload_known_extensions": False,
                    },
                )
            except duckdb.Error as exc:  # pragma: no cover - an in-memory database always opens
                raise DatabaseError(f"Cannot start DuckDB's SQL parser: {exc}") from None
            conn.execute("SET lock_configuration = true")
            _parser_conn = conn
        return _parser_conn.extract_statements(text)


def _words(text: str) -> list[str]:
    """The upper-cased keywords and identifiers of `text`, in order (comments are no tokens)."""
    import duckdb

    words = []
    for position, kind in duckdb.tokenize(text):
        if kind in (duckdb.token_type.keyword, duckdb.token_type.identifier):
            match = _WORD.match(text, position)
            if match:
                words.append(match.group().upper())
    return words


def _explained_kind(text: str) -> str:
    """The kind of the statement an EXPLAIN wraps (EXPLAIN when none is found)."""
    import duckdb

    # The explained statement starts at the first token after EXPLAIN from which the rest of
    # the text parses as one statement: past ANALYZE and any (options).
    for position, _ in duckdb.tokenize(text)[1:]:
        try:
            inner = _statements(text[position:])
        except duckdb.Error:
            continue
        if len(inner) == 1:
            return _kind_name(inner[0].type)
    return "EXPLAIN"


def _kind_name(kind: duckdb.StatementType) -> str:
    name = kind.name
    return name if name.isidentifier() else "UNKNOWN"


def _object_of(words: list[str]) -> str:
    """The object kind a CREATE or DROP statement names (TABLE, VIEW, SECRET, MACRO, ...)."""
    for word in words[1:]:
        if word not in _CREATE_MODIFIERS:
            return word
    return ""


def _is_writable(kind: str, words: list[str]) -> bool:
    if kind in ("INSERT", "UPDATE", "DELETE"):
        return True
    if kind == "ALTER":
        return bool(words) and words[0] in ("ALTER", "COMMENT")
    if kind in ("CREATE", "DROP"):
        return bool(words) and words[0] == kind and _object_of(words) in WRITABLE_OBJECTS
    return False


def _refusal(kind: str, allow_writes: bool) -> str:
    if not allow_writes:
        return (
            f"Only read-only queries are allowed ({READ_KINDS}); this is a {kind} statement. "
            "The database cannot be changed."
        )
    return (
        f"This is a {kind} statement, which is never allowed. Allowed: reads ({READ_KINDS}) and, "
        f"with the user's approval, one write statement ({WRITE_KINDS})."
    )


def classify(query: str, *, allow_writes: bool = False) -> Verdict:
    """Classify one SQL text with DuckDB's parser.

    Args:
        query: The SQL the model wrote.
        allow_writes: Whether the run lets writes through (after approval); only changes the
            wording of `reason`, not the verdict.

    Returns:
        The verdict: kind, whether it may run as a read, whether it is an approvable write, and
        why it is refused.
    """
    import duckdb

    if not query.strip():
        return Verdict("EMPTY", False, False, "The query is empty. Write one SELECT statement.")
    try:
        statements = _statements(query)
    except duckdb.Error as exc:
        return Verdict("INVALID", False, False, f"DuckDB could not parse the query: {exc}")
    if len(statements) != 1:
        return Verdict(
            "MULTIPLE",
            False,
            False,
            f"Send exactly one SQL statement per call (got {len(statements)}). "
            "Split the work into separate calls.",
        )
    statement = statements[0]
    kind = _kind_name(statement.type)
    text = statement.query  # the parser's text: unicode whitespace is already plain spaces
    if kind == "EXPLAIN":  # EXPLAIN ANALYZE runs the statement it explains
        kind = _explained_kind(text)
        if kind == "SELECT":
            return Verdict(kind, True, False, "")
        reason = _refusal(kind, False)
        if allow_writes:
            reason = (
                f"EXPLAIN is allowed only for SELECT statements; this explains a {kind} statement "
                "(EXPLAIN ANALYZE would run it). Send the statement itself if it is a write."
            )
        return Verdict(kind, False, False, reason)
    if kind == "SELECT":
        return Verdict(kind, True, False, "")
    write = _is_writable(kind, _words(text))
    reason = "" if write and allow_writes else _refusal(kind, allow_writes)
    return Verdict(kind, False, write, reason)


def printable(query: str) -> str:
    """Show SQL to a person exactly: control and format characters become visible escapes.

    An approval prompt must show what will run; escape sequences or bidirectional overrides in the
    model's SQL could otherwise redraw or reorder what the terminal shows.

    Args:
        query: SQL text from the model.
    """
    shown = []
    for char in query:
        category = unicodedata.category(char)
        if char in "\n\t" or not (category.startswith("C") or category in ("Zl", "Zp")):
            shown.append(char)
        else:
            code = ord(char)
            shown.append(
                f"\\x{code:02x}"
                if code < 0x100
                else f"\\u{code:04x}"
                if code < 0x10000
                else f"\\U{code:08x}"
            )
    return "".join(shown)
