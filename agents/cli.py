"""The `agent` command line: ask, chat and ingest.

This module imports only click at start-up; LangChain, LangGraph, llama-index and torch are
imported inside the commands that need them, so `agent --help` is instant. Errors become one clear
line on stderr and a non-zero exit here, at the edge, and nowhere else.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ollagraph.agents import __version__
from ollagraph.agents.errors import OllagraphError

MAX_QUESTION_CHARS = 20_000


def _log_unexpected(exc: BaseException) -> str:
    """Write the traceback of an unexpected error to the state directory; return the log path."""
    try:
        from ollagraph.agents.paths import state_path

        path = state_path("logs", "error.log")
        with path.open("a", encoding="utf-8") as log:
            log.write("".join(traceback.format_exception(exc)) + "\n")
        return str(path)
    except Exception:
        return "(the log could not be written)"


class AgentGroup(click.Group):
    """A click group that turns every failure into one message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; translate errors at the edge."""
        try:
            return super().invoke(ctx)
        except OllagraphError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            if exc.hint:
                click.echo(exc.hint, err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            log = _log_unexpected(exc)
            click.echo(f"Error: unexpected failure: {type(exc).__name__}: {exc}", err=True)
            click.echo(f"Details were written to {log}.", err=True)
            ctx.exit(1)


def _run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `ask` and `chat` (each overrides the config file and environment)."""
    options = [
        click.option("--db", help="DuckDB file, or a CSV/Parquet file to query (default: sample)."),
        click.option("--docs", help="Documents store made by `agent ingest` (default: sample)."),
        click.option("-m", "--model", help="Ollama model name."),
        click.option("--host", "ollama_host", help="Ollama server URL (default: $OLLAMA_HOST)."),
        click.option(
            "--tools",
            help="Comma-separated tools to enable (sql_query,search_documents,web_search).",
        ),
        click.option("--max-steps", type=int, help="Most tool-calling steps per question."),
        click.option("--temperature", type=float, help="Sampling temperature."),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False),
            help="Config file (TOML) to read instead of the default one.",
        ),
        click.option("-v", "--verbose", is_flag=True, help="Show plan, tool calls and timings."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(config_file: str | None, **flags: Any) -> Any:
    from ollagraph.agents.config import load_settings

    if flags.get("tools") is not None:
        flags["tools"] = tuple(t.strip() for t in flags["tools"].split(",") if t.strip())
    for key in ("db", "docs"):
        if flags.get(key):
            flags[key] = str(Path(flags[key]).expanduser().resolve())
    return load_settings(config_file, flags)


def _prepare(settings: Any, verbose: bool = False) -> Any:
    """Check the data sources, then make sure the model server runs and has the model.

    A bad path fails at once, before any server is started. A server this command starts is
    stopped when it ends (also on SIGTERM), unless `leave_server_running` is set.
    """
    if "sql_query" in settings.tools:
        from ollagraph.tools.sql import check_database

        check_database(settings)
    if "search_documents" in settings.tools:
        from ollagraph.tools.documents import check_documents

        settings = check_documents(settings)
    from ollagraph.agents.daemon import ensure_server
    from ollagraph.agents.pull_progress import ensure_model_with_progress

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so atexit stops our server
    handle = ensure_server(settings)
    if verbose:
        click.echo(handle.describe(), err=True)
    ensure_model_with_progress(settings)
    return settings


@click.group(cls=AgentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agent")
def main() -> None:
    """Agents on small local models: ask questions of your data, documents and the web."""


@main.command()
@click.argument("question")
@_run_options
@click.option("--json", "as_json", is_flag=True, help="Print {answer, plan, tool_calls, timings}.")
def ask(question: str, verbose: bool, as_json: bool, config_file: str | None, **flags: Any) -> None:
    """Answer one QUESTION and exit. The answer goes to stdout, progress to stderr."""
    question = question.strip()
    if not question:
        raise click.UsageError("The question is empty.")
    if len(question) > MAX_QUESTION_CHARS:
        raise click.UsageError(
            f"The question is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}."
        )
    from ollagraph.agents.render import Renderer
    from ollagraph.agents.session import Session

    settings = _prepare(_settings(config_file, **flags), verbose)
    session = Session(settings)
    if as_json:
        result = session.ask(question, None)
        click.echo(json.dumps(result.as_json(settings.model), ensure_ascii=False, indent=2))
        return
    renderer = Renderer(verbose=verbose)
    if verbose:
        renderer.err.print(
            f"[dim]model {settings.model} at {settings.host} · thread {session.thread_id}[/dim]",
            highlight=False,
        )
    result = session.ask(question, renderer)
    renderer.finish(result.answer, result.timings)


@main.command()
@_run_options
@click.option("--thread", "thread_id", help="Continue the saved conversation with this id.")
def chat(verbose: bool, config_file: str | None, thread_id: str | None, **flags: Any) -> None:
    """Talk with the agent in the terminal (history, /commands, resumable threads)."""
    from ollagraph.agents.chat import run_chat
    from ollagraph.agents.session import Session, new_thread_id

    settings = _prepare(_settings(config_file, **flags), verbose)
    session = Session(settings, thread_id=thread_id or new_thread_id())
    sys.exit(run_chat(session, verbose=verbose))


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--docs", help="Documents store to create or update (default: in the state dir).")
@click.option("--chunk-size", type=int, help="Tokens per chunk.")
@click.option("--chunk-overlap", type=int, help="Tokens shared by neighbouring chunks.")
@click.option("--embed-model", help="'minilm' (bundled, offline) or 'ollama:NAME'.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="Config file.")
def ingest(paths: tuple[Path, ...], config_file: str | None, **flags: Any) -> None:
    """Add text, Markdown, HTML and PDF files (or folders of them) to a documents store.

    Unchanged files are skipped, changed files replace their old chunks.
    """
    from ollagraph.agents.progress import ingest_with_progress
    from ollagraph.tools.documents import user_store_path

    settings = _settings(config_file, **flags)
    store = Path(settings.docs) if settings.docs else user_store_path()
    report = ingest_with_progress(list(paths), store, settings)
    click.echo(report.summary(), err=True)
    click.echo(str(store))


if __name__ == "__main__":  # pragma: no cover
    main()
