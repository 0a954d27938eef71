"""A progress bar for model pulls, drawn with rich on stderr.

`readiness.ensure_model` reports plain `PullEvent`s; `PullProgress` draws them as one bar whose
size is the sum of the layer sizes seen so far and whose progress is the sum of each layer's
latest downloaded bytes (`readiness.PullTally`), with the server's status line beside it. The bar
appears only when the first event arrives, so nothing is drawn when the model is already there::

    with PullProgress() as bar:
        ensure_model(settings, progress=bar)
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ollagraph.agents.config import Settings
from ollagraph.agents.readiness import LocalModel, PullEvent, PullTally, ensure_model


class PullProgress:
    """Draw `PullEvent`s as one overall download bar (call the instance with each event)."""

    def __init__(self, console: Console | None = None) -> None:
        """Create the renderer; nothing is drawn until the first event.

        Args:
            console: Where to draw (default: a stderr console).
        """
        self.console = console or Console(stderr=True)
        self.tally = PullTally()
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> PullProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __call__(self, event: PullEvent) -> None:
        """Show one event: update the byte counts and the status line."""
        self.tally.update(event)
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]Pulling[/bold] {task.fields[model]}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}", style="dim"),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task("pull", total=None, model=event.model, status="")
            self._progress.start()
        assert self._task is not None
        status = event.status
        if event.digest and status.endswith(event.digest):
            status = status[: -len(event.digest)] + event.digest.removeprefix("sha256:")[:12]
        total = self.tally.total or None
        completed = self.tally.completed
        if event.status == "success" and total is not None:
            completed = total
        self._progress.update(self._task, total=total, completed=completed, status=status)

    def close(self) -> None:
        """Stop drawing (leaves the finished bar on screen)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def ensure_model_with_progress(
    settings: Settings,
    *,
    console: Console | None = None,
    model: str | None = None,
    asked: bool = False,
) -> LocalModel:
    """`readiness.ensure_model` with a pull progress bar on stderr.

    Args:
        settings: Model, `auto_pull` and server.
        console: Where to draw (default: stderr).
        model: Another model than `settings.model`.
        asked: The user asked for the pull (`agent models pull`), so a remote server is pulled
            onto too.
    """
    with PullProgress(console) as bar:
        return ensure_model(settings, bar, model=model, asked=asked)


__all__ = ["PullProgress", "ensure_model_with_progress"]
