"""How a followed job is shown: rich bars per stage on a terminal, plain lines otherwise."""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from shared.client.follow import STAGES, JobState


class JobDisplay(Protocol):
    def update(self, state: JobState) -> None: ...

    def close(self) -> None: ...


def _queued_text(state: JobState) -> str:
    parts = ["queued"]
    if state.queue_position is not None:
        parts.append(f"position {state.queue_position}")
    if state.eta_s is not None:
        parts.append(f"ETA {state.eta_s:.0f} s")
    return ", ".join(parts)


def _line_of(state: JobState) -> tuple[str, tuple[object, ...]]:
    """A plain line for the state, and what must change for another line to be printed."""
    if state.terminal:  # before the stage: a finished job keeps the stage it reached
        return state.status, (state.status,)
    if state.status == "queued":  # a new line when the position moves, not at every ETA
        return _queued_text(state), (state.status, state.queue_position)
    if state.stage in STAGES:
        return f"{state.stage} started", (state.status, state.stage)
    return state.status, (state.status,)


class LineDisplay:
    """One plain line per change of status or stage (no TTY, or --json): for logs and pipes."""

    def __init__(self, job_id: str, console: Console) -> None:
        self.job_id, self.console = job_id, console
        self._last: tuple[object, ...] = ()

    def update(self, state: JobState) -> None:
        line, key = _line_of(state)
        if key != self._last:
            self.console.print(f"{self.job_id}: {line}", highlight=False, markup=False)
            self._last = key

    def close(self) -> None:
        return None


class BarsDisplay:
    """A queue line, then one bar per stage with step counts, redrawn live on a terminal."""

    def __init__(self, job_id: str, console: Console) -> None:
        self.job_id = job_id
        self.progress = Progress(
            TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
            console=console, transient=False,
        )  # fmt: skip
        self.queue_task: TaskID | None = self.progress.add_task(f"{job_id[:12]} queued", total=None)
        self.stage_tasks: dict[str, TaskID] = {}
        self.totals: dict[str, int] = {}
        self.progress.start()

    def _finish_queue(self) -> None:
        if self.queue_task is not None:
            self.progress.remove_task(self.queue_task)
            self.queue_task = None

    def _complete(self, stage: str) -> None:
        if stage in self.stage_tasks:
            total = self.totals.get(stage, 1)
            self.progress.update(self.stage_tasks[stage], total=total, completed=total)

    def update(self, state: JobState) -> None:
        if state.terminal:
            self._finish_queue()
            if state.status == "succeeded":
                for stage in list(self.stage_tasks):
                    self._complete(stage)
            self.progress.console.print(f"{self.job_id}: {state.status}", highlight=False)
            return
        if state.status == "queued" and self.queue_task is not None:
            self.progress.update(self.queue_task, description=_queued_text(state))
            return
        if state.stage in STAGES and state.stage is not None:
            self._finish_queue()
            for done in STAGES[: STAGES.index(state.stage)]:
                self._complete(done)
            if state.stage not in self.stage_tasks:
                self.stage_tasks[state.stage] = self.progress.add_task(state.stage, total=None)
            if state.steps:
                self.totals[state.stage] = state.steps
            self.progress.update(
                self.stage_tasks[state.stage],
                total=self.totals.get(state.stage),
                completed=state.step or 0,
            )

    def close(self) -> None:
        self.progress.stop()


class NoDisplay:
    """Nothing drawn (--json: the output is one JSON document)."""

    def update(self, state: JobState) -> None:
        return None

    def close(self) -> None:
        return None


def make_display(job_id: str, console: Console, *, quiet: bool) -> JobDisplay:
    """Nothing when `quiet`, bars on a terminal, plain lines otherwise."""
    if quiet:
        return NoDisplay()
    if console.is_terminal:
        return BarsDisplay(job_id, console)
    return LineDisplay(job_id, console)
