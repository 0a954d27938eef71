"""Constants shared by the embedded engine's test files."""

from __future__ import annotations

MINILM = "all-minilm"

SQL_TOOL = {
    "type": "function",
    "function": {
        "name": "sql_query",
        "description": "Run one read-only SQL query.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
}
