"""Progress bars for long work started from the CLI (document ingestion).

`tools.ingest` reports plain `IngestEvent`s; this module draws them with rich on stderr: one bar
over files, and a line per file that was skipped or failed to read cleanly. When stderr is not a
terminal (a log file, a pipe) the bar cannot redraw, so each finished file gets its own line
instead (`[3/40] added notes.md (4 chunks)`), and a log shows how far a run got.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ollagraph.agents.config import Settings

if TYPE_CHECKING:
    from ollagraph.tools.ingest import IngestEvent, IngestReport


def ingest_with_progress(
    paths: list[Path], store: Path, settings: Settings, console: Console | None = None
) -> IngestReport:
    """Ingest `paths` into `store`, showing a progress bar on stderr.

    Args:
        paths: Files and folders to ingest.
        store: The documents store to create or update.
        settings: Embedding model and chunking.
        console: Where to draw (stderr by default).
    """
    from ollagraph.tools.ingest import ingest

    console = console or Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]Ingesting[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[current]}", style="dim"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = progress.add_task("files", total=None, current="")

    def on_event(event: IngestEvent) -> None:
        if event.kind == "start":
            progress.update(task, total=event.total)
        elif event.kind == "file_start" and event.path is not None:
            progress.update(task, current=event.path.name)
        elif event.kind == "embed" and event.path is not None:
            progress.update(task, current=f"{event.path.name}: {event.done}/{event.total} chunks")
        elif event.kind == "file":
            progress.update(task, completed=event.done, current="")
            if event.status == "skipped" and event.path is not None:
                progress.console.print(f"[yellow]skipped[/yellow] {event.path}: {event.reason}")
            elif not console.is_terminal and event.path is not None:
                chunks = f"{event.chunks} chunk{'' if event.chunks == 1 else 's'}"
                progress.console.print(
                    f"[{event.done}/{event.total}] {event.status} {event.path} ({chunks})",
                    highlight=False,
                    markup=False,
                )

    with progress:
        report = ingest(paths, store, settings, progress=on_event)
    for warning in report.warnings:
        console.print(f"[yellow]warning[/yellow] {warning}")
    return report
