"""`agent chat`: a terminal conversation with the agent, in the manner of `llm chat`.

Lines are questions; slash commands control the session (`/help` lists them). Ctrl-C cancels the
turn in progress and returns to the prompt; Ctrl-D, `exit`, `quit` or `/exit` end the session.
Every turn is checkpointed, so `agent chat --thread ID` continues a saved conversation. With
`--allow-writes`, each database write the model wants to run is shown and needs a "y".
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any, TextIO

from rich.console import Console

from ollagraph.agents.errors import ConfigError, OllagraphError
from ollagraph.agents.paths import state_path
from ollagraph.agents.questions import question_problem
from ollagraph.agents.render import Renderer
from ollagraph.agents.session import Session, new_thread_id

HELP = """Commands:
  /help          this list
  /tools         the tools the model may call
  /model [NAME]  show or switch the model
  /thread        show this conversation's id (continue it later with --thread ID)
  /history       show this conversation so far
  /reset         start a new conversation
  /exit          leave (also: exit, quit, Ctrl-D)
Ctrl-C cancels the answer in progress."""


def _enable_line_history() -> None:
    """Arrow-key history across sessions, when the terminal supports readline."""
    if not sys.stdin.isatty():
        return
    try:
        import atexit
        import readline

        path = state_path("chat_history")
        with contextlib.suppress(OSError):
            readline.read_history_file(path)
        readline.set_history_length(1000)
        atexit.register(readline.write_history_file, path)
    except (ImportError, OSError):  # pragma: no cover - platforms without readline
        return


def approver(read: Callable[[str], str], console: Console) -> Callable[[dict[str, Any]], bool]:
    """Ask the user about each write: show the SQL, read "Run this write? [y/N]".

    Args:
        read: Reads one line (the prompt is its argument).
        console: Where the SQL is shown.
    """
    from ollagraph.tools.sql_guard import printable

    def approve(request: dict[str, Any]) -> bool:
        where = request.get("database", "the database")
        console.print(f"\nThe model wants to change {where}:", markup=False)
        console.print(f"  {printable(str(request.get('sql', '')))}", markup=False, style="bold")
        try:
            answer = read(f"{request.get('question', 'Run this write? [y/N]')} ")
        except (EOFError, KeyboardInterrupt):
            answer = ""
        approved = answer.strip().lower() in ("y", "yes")
        console.print("Approved." if approved else "Declined: the write did not run.")
        return approved

    return approve


def run_chat(
    session: Session,
    verbose: bool = False,
    read: Callable[[str], str] = input,
    err: TextIO | None = None,
) -> int:
    """Run the REPL until the user leaves; return the exit code.

    Args:
        session: The conversation (its thread may already hold earlier turns).
        verbose: Show tool arguments, outputs and timings.
        read: Reads one line (the prompt is its argument); `input` by default.
        err: Stream for messages to the user (stderr by default).
    """
    console = Console(file=err or sys.stderr, soft_wrap=True, highlight=False)
    _enable_line_history()
    from ollagraph.tools.registry import summary

    if session.settings.allow_writes and session.approve is None:
        session.approve = approver(read, console)
    earlier = session.history()
    console.print(
        f"Chatting with [bold]{session.settings.model}[/bold] · thread {session.thread_id}"
        + (f" ({len(earlier) // 2} earlier turns)" if earlier else "")
        + ". Type /help for commands, /exit to leave."
    )
    if session.settings.allow_writes:
        console.print("Writes are allowed: each one is shown and runs only if you answer y.")
    while True:
        try:
            line = read("> ").strip()
        except EOFError:
            console.print()
            return 0
        except KeyboardInterrupt:
            console.print("\n(Ctrl-D or /exit to leave)")
            continue
        if not line:
            continue
        if line in ("exit", "quit", "/exit", "/quit"):
            return 0
        if line.startswith("/"):
            command, _, arg = line.partition(" ")
            arg = arg.strip()
            if command == "/help":
                console.print(HELP)
            elif command == "/tools":
                for name in session.settings.tools:
                    console.print(f"  [bold]{name}[/bold]: {summary(name)}")
            elif command == "/model":
                if arg:
                    try:
                        session.settings = session.settings.with_overrides(model=arg)
                    except ConfigError as exc:
                        console.print(f"[red]{exc}[/red]")
                        continue
                console.print(f"model: {session.settings.model}")
            elif command == "/thread":
                console.print(f"thread: {session.thread_id}")
            elif command == "/history":
                for role, text in session.history():
                    console.print(f"[bold]{role}[/bold]: {text}")
            elif command == "/reset":
                session.thread_id = new_thread_id()
                console.print(f"New conversation · thread {session.thread_id}")
            else:
                console.print(f"Unknown command {command}. /help lists the commands.")
            continue
        problem = question_problem(line)
        if problem:
            console.print(f"[red]{problem}[/red]")
            continue
        renderer = Renderer(verbose=verbose)
        try:
            result = session.ask(line, renderer)
        except KeyboardInterrupt:
            renderer.finish("")
            console.print("\n[yellow]Cancelled.[/yellow] Ask again or try something else.")
            continue
        except OllagraphError as exc:
            renderer.finish("")
            console.print(f"[red]Error:[/red] {exc}")
            continue
        renderer.finish(result.answer, result.timings if verbose else None)
