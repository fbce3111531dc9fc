"""What a follower shows: the real outcome of a finished job, the queue standing while it waits."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from shared.client.display import BarsDisplay, LineDisplay
from shared.client.follow import JobState

JOB = "02a9ba2e-aa2c-4b7e-9d9e-0123456789ab"


def _console(*, terminal: bool) -> tuple[Console, io.StringIO]:
    text = io.StringIO()
    return Console(file=text, force_terminal=terminal, width=100, color_system=None), text


@pytest.mark.parametrize("status", ["cancelled", "held", "failed", "rejected", "expired",
                                    "succeeded"])  # fmt: skip
def test_a_finished_job_says_how_it_ended_whatever_stage_it_reached(status: str) -> None:
    console, text = _console(terminal=False)
    display = LineDisplay(JOB, console)
    display.update(JobState("decoder", stage="decoder", step=3, steps=4))
    display.update(JobState(status, stage="decoder", step=3, steps=4))  # as GET answers it
    assert text.getvalue().splitlines() == [f"{JOB}: decoder started", f"{JOB}: {status}"]


def test_lines_follow_the_queue_position_not_every_eta() -> None:
    console, text = _console(terminal=False)
    display = LineDisplay(JOB, console)
    for position, eta_s in [(2, 30.0), (2, 28.0), (1, 15.0)]:
        display.update(JobState("queued", queue_position=position, eta_s=eta_s))
    assert text.getvalue().splitlines() == [f"{JOB}: queued, position 2, ETA 30 s",
                                            f"{JOB}: queued, position 1, ETA 15 s"]  # fmt: skip


def test_bars_show_the_queue_position_and_eta_then_the_outcome() -> None:
    console, text = _console(terminal=True)
    display = BarsDisplay(JOB, console)
    display.update(JobState("queued", queue_position=3, eta_s=42.0))
    display.progress.refresh()
    assert "queued, position 3, ETA 42 s" in text.getvalue()
    display.update(JobState("cancelled", stage="prior", step=1, steps=4))
    display.close()
    assert f"{JOB}: cancelled" in text.getvalue()
