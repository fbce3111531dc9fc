"""StepBar: a rich progress bar on stderr for long in-process commands (train, eval, import)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class StepBar:
    """Counts steps toward `total` with a description and a free-text status (loss, minutes).

    On a terminal it redraws in place; piped, rich prints the final state only. `disable`
    draws nothing (e.g. `unclip train --no-progress`).
    """

    def __init__(
        self, total: int | None, description: str, *, initial: int = 0, disable: bool = False
    ) -> None:
        self._progress: Progress | None = None
        if disable:
            return
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
            console=Console(stderr=True), refresh_per_second=2,
        )  # fmt: skip
        self._task = self._progress.add_task(description, total=total, completed=initial,
                                             status="")  # fmt: skip
        self._progress.start()

    def update(self, steps: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, steps)

    def advance_to(self, done: str) -> None:
        """One step more, with `done` (what was just finished) as the status."""
        self.update()
        self.status(done=done)

    def status(self, **values: object) -> None:
        """Show `key=value` pairs after the bar (replacing the previous ones)."""
        if self._progress is not None:
            text = " ".join(f"{k}={v}" for k, v in values.items())
            self._progress.update(self._task, status=text)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> StepBar:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
