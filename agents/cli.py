"""The `agent` command line: ask, chat, ingest, serve, models, tools, eval and doctor.

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
from ollagraph.agents.questions import question_problem


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
            multiple=True,
            help="Tools to enable: comma-separated names (sql_query,search_documents,web_search), "
            "or a Python file of your own tools, FILE.py or FILE.py:func1,func2 (repeatable).",
        ),
        click.option("--max-steps", type=int, help="Most tool-calling steps per question."),
        click.option("--temperature", type=float, help="Sampling temperature."),
        click.option(
            "--config",
            "config_file",
            type=click.Path(dir_okay=False),
            help="Config file (TOML) to read instead of the default one.",
        ),
        click.option(
            "--allow-writes",
            is_flag=True,
            default=None,
            help="Let SQL change the --db DuckDB file; each write needs approval.",
        ),
        click.option("-v", "--verbose", is_flag=True, help="Show plan, tool calls and timings."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(config_file: str | None, **flags: Any) -> Any:
    from ollagraph.agents.config import load_settings

    flags.update(_split_tools(flags.pop("tools", None)))
    for key in ("db", "docs"):
        if flags.get(key):
            flags[key] = str(Path(flags[key]).expanduser().resolve())
    return load_settings(config_file, flags)


def _split_tools(values: str | tuple[str, ...] | None) -> dict[str, Any]:
    """`--tools` values → `tools` (names) and `user_tools` (file specs, made absolute).

    A value with a dot or a slash is a file spec; others are comma-separated tool names.
    """
    from ollagraph.tools.user_tools import absolute_spec, looks_like_file_spec

    if isinstance(values, str):
        values = (values,)
    names: list[str] = []
    files: list[str] = []
    for value in values or ():
        if looks_like_file_spec(value):
            files.append(absolute_spec(value, Path.cwd()))
        else:
            names += [t.strip() for t in value.split(",") if t.strip()]
    return {"tools": tuple(names) or None, "user_tools": tuple(files) or None}


def _start_server(settings: Any) -> Any:
    """Find or start the model server; a server this command starts stops with it, SIGTERM too.

    An OpenAI-compatible server (backend 'openai') is never started: None.
    """
    from ollagraph.agents.daemon import ensure_server

    if settings.backend == "openai":
        return None
    signal.signal(signal.SIGTERM, _terminated)
    return ensure_server(settings)


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM: run the exit handlers (they stop a server we started), then leave at once.

    `sys.exit` would wait for the worker threads of a model call or tool in flight (for tens of
    seconds); what they leave behind is already safe (checkpoints and stores are transactional).
    """
    import atexit
    import os

    atexit._run_exitfuncs()
    sys.stderr.flush()
    os._exit(128 + signum)


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
    from ollagraph.agents.pull_progress import ensure_model_with_progress

    handle = _start_server(settings)
    if verbose:
        where = f"OpenAI-compatible server at {settings.openai_base_url}"
        click.echo(handle.describe() if handle is not None else where, err=True)
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
@click.option(
    "-y", "--yes", is_flag=True, help="Approve every write (with --allow-writes) without asking."
)
def ask(
    question: str,
    verbose: bool,
    as_json: bool,
    yes: bool,
    config_file: str | None,
    **flags: Any,
) -> None:
    """Answer one QUESTION and exit. The answer goes to stdout, progress to stderr.

    With --allow-writes, a write statement runs only with --yes; without it, writes are declined.
    """
    question = question.strip()
    problem = question_problem(question)
    if problem:
        raise click.UsageError(problem)
    from ollagraph.agents.render import Renderer
    from ollagraph.agents.session import Session

    settings = _prepare(_settings(config_file, **flags), verbose)
    session = Session(settings, approve=_approve_all if yes else None)
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


def _approve_all(request: dict[str, Any]) -> bool:
    """`ask --yes`: approve a write, and say so on stderr."""
    from ollagraph.tools.sql_guard import printable

    click.echo(f"Approved by --yes: {printable(str(request.get('sql', '')))}", err=True)
    return True


@main.command()
@_run_options
@click.option("--thread", "thread_id", help="Continue the saved conversation with this id.")
def chat(verbose: bool, config_file: str | None, thread_id: str | None, **flags: Any) -> None:
    """Talk with the agent in the terminal (history, /commands, resumable threads)."""
    from ollagraph.agents.chat import run_chat
    from ollagraph.agents.session import Session, new_thread_id

    settings = _prepare(_settings(config_file, **flags), verbose)
    from ollagraph.agents.readiness import warm_up

    warm_up(settings)  # load the model now (kept for keep_alive), not on the first question
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
    from ollagraph.agents.errors import IngestError
    from ollagraph.agents.progress import ingest_with_progress
    from ollagraph.tools.documents import release_store, user_store_path

    settings = _settings(config_file, **flags)
    store = Path(settings.docs) if settings.docs else user_store_path()
    existed = store.exists()
    report = ingest_with_progress(list(paths), store, settings)
    click.echo(report.summary(), err=True)
    if report.skipped and not (report.added or report.updated or report.unchanged):
        if not existed:  # an empty store would hide the sample documents from `ask`
            release_store(store)
            for leftover in (store, store.with_name(store.name + ".wal")):
                leftover.unlink(missing_ok=True)
        raise IngestError(
            f"Nothing was ingested: all {len(report.skipped)} file(s) were skipped (see above)."
        )
    click.echo(str(store))


@main.command()
@click.option(
    "--host", "bind", help="Address to listen on (default: $OLLAMA_HOST or 127.0.0.1:11434)."
)
def serve(bind: str | None) -> None:
    """Run the embedded Ollama-compatible engine in the foreground (Ctrl-C stops it)."""
    from ollagraph.agents.engine.__main__ import main as engine_main

    args = ["serve"]
    if bind:
        from ollagraph.agents.engine.server import parse_bind_address

        try:
            host, port = parse_bind_address(bind)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--host") from None
        args += ["--host", host, "--port", str(port)]
    sys.exit(engine_main(args))


def _server_settings(config_file: str | None, model: str | None = None, **flags: Any) -> Any:
    """Settings for a `models` command, with the server found or started."""
    settings = _settings(config_file, model=model, **flags)
    _start_server(settings)
    return settings


_config_option = click.option(
    "--config", "config_file", type=click.Path(dir_okay=False), help="Config file (TOML)."
)
_host_option = click.option("--host", "ollama_host", help="Ollama server URL.")


@main.group()
def models() -> None:
    """List, pull, inspect and register models."""


@models.command("list")
@_config_option
@_host_option
def models_list(config_file: str | None, ollama_host: str | None) -> None:
    """List the models the server has."""
    from ollagraph.agents.readiness import list_models

    settings = _server_settings(config_file, ollama_host=ollama_host)
    have = list_models(settings)
    if not have:
        click.echo("No models yet. Pull one with: agent models pull smollm2:135m", err=True)
    for entry in have:
        size = f"{entry.size / 1e6:,.0f} MB" if entry.size else ""
        click.echo(f"{entry.name}\t{entry.digest[:12]}\t{size}")


@models.command("pull")
@click.argument("name")
@_config_option
@_host_option
def models_pull(name: str, config_file: str | None, ollama_host: str | None) -> None:
    """Download NAME to the server (with a progress bar)."""
    from ollagraph.agents.pull_progress import ensure_model_with_progress

    settings = _server_settings(config_file, ollama_host=ollama_host, auto_pull=True)
    entry = ensure_model_with_progress(settings, model=name, asked=True)
    click.echo(f"{entry.name} is ready.")


@models.command("show")
@click.argument("name", required=False)
@_config_option
@_host_option
def models_show(name: str | None, config_file: str | None, ollama_host: str | None) -> None:
    """Show NAME's capabilities, context length and how ollagraph calls tools with it."""
    from ollagraph.agents.readiness import model_info
    from ollagraph.agents.strategy import strategy_for

    settings = _server_settings(config_file, ollama_host=ollama_host)
    info = model_info(settings, model=name)
    native = strategy_for(info, settings) == "native"
    strategy = "native tool calls" if native else "constrained JSON decisions"
    rows = [
        ("model", info.name),
        ("digest", info.digest),
        ("capabilities", ", ".join(sorted(info.capabilities)) or "none reported"),
        ("context length", str(info.context_length or "unknown")),
        ("family", info.family or ""),
        ("parameters", info.parameter_size or ""),
        ("quantization", info.quantization or ""),
        ("tools via", strategy),
    ]
    for key, value in rows:
        click.echo(f"{key:15} {value}")


@models.command("add")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--lora",
    "loras",
    multiple=True,
    metavar="ADAPTER.gguf[:SCALE]",
    help="A GGUF LoRA adapter to apply, with an optional scale (default 1.0); repeatable.",
)
def models_add(name: str, path: Path, loras: tuple[str, ...]) -> None:
    """Register a GGUF file at PATH as model NAME for the embedded engine (like `ollama create`).

    With --lora, the model is PATH with LoRA adapters applied (Ollama's ADAPTER lines).
    """
    from ollagraph.agents.engine.lora import parse_lora_option
    from ollagraph.agents.engine.registry import Registry
    from ollagraph.agents.paths import state_path

    try:
        adapters = [parse_lora_option(value) for value in loras]
        registry = Registry(state_path("models", "registry.json").parent)
        spec = registry.register(name, path, adapters)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"Registered {spec.name} → {path.resolve()}. Use it with: agent ask --model {spec.name} ..."
    )
    for adapter in spec.adapters:
        click.echo(f"  LoRA adapter {adapter.path} (scale {adapter.scale:g})")


def _add_image_commands() -> None:
    from ollagraph.agents.image_cli import image

    main.add_command(image)


_add_image_commands()


@main.command("eval")
@click.option("-m", "--model", help="Ollama model name (default: the configured model).")
@_host_option
@click.option(
    "--questions",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Question set (YAML; default: the bundled public set).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Run only the first N questions.")
@click.option(
    "--baseline/--no-baseline",
    default=True,
    help="Also run LangGraph's prebuilt tool-calling agent (default: yes).",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write JSON here."
)
@_config_option
def eval_command(
    model: str | None,
    ollama_host: str | None,
    questions: Path | None,
    limit: int | None,
    baseline: bool,
    json_path: Path | None,
    config_file: str | None,
) -> None:
    """Score answer quality on a question set: ollagraph's agent vs a baseline agent.

    Prints a markdown table to stdout (progress on stderr); --json writes every question's result.
    """
    from ollagraph.agents.evaluation.questions import load_questions
    from ollagraph.agents.evaluation.report import markdown_report, report_json
    from ollagraph.agents.evaluation.runner import SYSTEMS, evaluate

    qs = load_questions(questions)[:limit]
    settings = _prepare(_settings(config_file, model=model, ollama_host=ollama_host))

    done: list[Any] = []

    def progress(o: Any) -> None:
        mark = "✓" if o.answer_correct else "✗"
        calls = ", ".join(c.name for c in o.calls) or "no tools"
        click.echo(f"{mark} {o.id:10} {o.system:9} {o.seconds:6.1f} s  {calls}", err=True)
        done.append(o)
        if json_path:  # after every question, so a long run that is stopped keeps its results
            doc = report_json(done, settings.model, str(questions or "bundled"))
            json_path.write_text(json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n")

    systems = SYSTEMS if baseline else ("ollagraph",)
    outcomes = evaluate(qs, settings, systems, on_outcome=progress)
    click.echo(markdown_report(outcomes, settings.model))


@main.command("tools")
@click.option(
    "--tools",
    "specs",
    multiple=True,
    help="Also load this file of your own tools: FILE.py or FILE.py:func1,func2 (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object {tools, problems}.")
@_config_option
def tools_command(specs: tuple[str, ...], as_json: bool, config_file: str | None) -> None:
    """List every tool: built-in, from installed packages, and from your tool files.

    Each line shows the name, whether it is enabled, where it comes from and what it does. A tool
    file that cannot be loaded is an error; an installed package whose tools cannot be loaded is
    reported on stderr and skipped.
    """
    from ollagraph.tools.registry import describe
    from ollagraph.tools.user_tools import entry_point_tools

    settings = _settings(config_file, tools=specs)
    rows = describe(settings)
    problems = entry_point_tools()[1]
    if as_json:
        click.echo(json.dumps({"tools": rows, "problems": problems}, ensure_ascii=False, indent=2))
        return
    for problem in problems:
        click.echo(f"Warning: {problem} Skipped.", err=True)
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        where = row["source"] if row["origin"] is None else f"{row['source']} {row['origin']}"
        if row["source"] == "entry point":
            where = row["origin"]
        mark = "✓" if row["enabled"] else " "
        click.echo(f"{mark} {row['name']:{width}}  {row['description']}  [{where}]")


@main.command()
@_config_option
def doctor(config_file: str | None) -> None:
    """Check the state directory, model server, model, device, DuckDB, data and network."""
    from ollagraph.agents.config import load_settings
    from ollagraph.agents.doctor import run_checks

    settings = load_settings(config_file)
    failed = False
    for check in run_checks(settings):
        mark = "✓" if check.ok else "✗"
        click.echo(f"{mark} {check.name}: {check.detail}")
        if not check.ok and check.hint:
            click.echo(f"    fix: {check.hint}")
        failed = failed or (not check.ok and check.essential)
    if failed:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
