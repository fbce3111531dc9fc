"""StepBar: counts steps and shows a status; disabled, it draws nothing."""

from __future__ import annotations

import pytest

from shared.console_progress import StepBar


def test_bar_counts_steps_and_shows_status_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with StepBar(4, "prior", initial=1) as bar:
        bar.update()
        bar.update(2)
        bar.status(loss="0.1234")
    err = capsys.readouterr().err
    assert "prior" in err and "4/4" in err and "loss=0.1234" in err


def test_disabled_bar_draws_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with StepBar(3, "decoder", disable=True) as bar:
        bar.update()
        bar.status(loss=1)
    assert capsys.readouterr().err == ""
