"""LangGraph graphs. Each module exports a compiled `graph` (see langgraph.json)."""
