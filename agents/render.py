"""Terminal output for a turn: progress on stderr, the answer on stdout.

The plan and tool calls go to stderr (shown when stderr is a terminal, or always with `-v`, which
adds arguments, outputs and durations), so `agent ask ... > answer.md` stays clean. The answer
streams to stdout: rendered as Markdown on a terminal, plain text when piped.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.text import Text


def _preview(text: str, lines: int = 6, width: int = 160) -> str:
    shown = [line[:width] for line in text.splitlines()[:lines]]
    more = len(text.splitlines()) - lines
    return "\n".join(shown) + (f"\n… ({more} more lines)" if more > 0 else "")


class Renderer:
    """Shows one turn's progress and answer; implements `session.Listener`.

    Args:
        verbose: Show tool arguments, outputs and durations on stderr.
        out: Console for the answer (stdout).
        err: Console for progress (stderr).
    """

    def __init__(
        self, verbose: bool = False, out: Console | None = None, err: Console | None = None
    ) -> None:
        self.out = out or Console(soft_wrap=True)
        self.err = err or Console(stderr=True, soft_wrap=True)
        self.verbose = verbose
        self.show_progress = verbose or self.err.is_terminal
        self.markdown = self.out.is_terminal
        self._buffer = ""
        self._live: Live | None = None

    def plan(self, text: str) -> None:
        """Print the plan (stderr)."""
        if self.show_progress and text:
            self.err.print(Text("Plan", style="bold cyan"))
            self.err.print(Text(text, style="cyan"), highlight=False)

    def tool_call(self, run: dict[str, Any]) -> None:
        """Print one finished tool call (stderr)."""
        if not self.show_progress:
            return
        mark = "[green]✓[/green]" if run.get("ok") else "[red]✗[/red]"
        line = f"{mark} [bold]{run.get('name')}[/bold] [dim]{run.get('seconds', 0):.2f} s[/dim]"
        self.err.print(line, highlight=False)
        if self.verbose:
            args = json.dumps(run.get("args"), ensure_ascii=False)
            self.err.print(Text(f"  args: {args}", style="dim"), highlight=False)
            self.err.print(Text(_preview(str(run.get("output", ""))), style="dim"), highlight=False)

    def answer_token(self, text: str) -> None:
        """Show a piece of the answer as it streams (stdout)."""
        self._buffer += text
        if self.markdown:
            if self._live is None:
                self._live = Live(
                    Markdown(self._buffer),
                    console=self.out,
                    refresh_per_second=10,
                    vertical_overflow="visible",
                )
                self._live.start()
            else:
                self._live.update(Markdown(self._buffer))
        else:
            sys.stdout.write(text)
            sys.stdout.flush()

    def finish(self, answer: str, timings: dict[str, float] | None = None) -> None:
        """Close the answer: print it whole if nothing streamed, end the line, show timings."""
        if self._live is not None:
            self._live.update(Markdown(answer))
            self._live.stop()
            self._live = None
        elif not self._buffer:
            if self.markdown:
                self.out.print(Markdown(answer))
            else:
                sys.stdout.write(answer + "\n")
        elif not self.markdown:
            if self._buffer.split() != answer.split():
                # The stored answer differs from the stream (e.g. a partial-answer note).
                sys.stdout.write("\n" + answer)
            sys.stdout.write("\n")
        sys.stdout.flush()
        if self.verbose and timings:
            parts = ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
            self.err.print(Text(f"timings: {parts}", style="dim"), highlight=False)
        self._buffer = ""
