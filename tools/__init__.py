"""Tools the model can call: DuckDB SQL, document search and web search.

The registry is `ollagraph.tools.registry.TOOLS`. Importing this package imports nothing heavy.
"""
