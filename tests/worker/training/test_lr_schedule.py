"""Learning-rate decay over the budget: warm-up, then cosine or steps, by steps or minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.training.loop import LoopOptions, learning_rate


def _opts(**kw: object) -> LoopOptions:
    return LoopOptions(out_dir=Path("unused"), lr=1e-3, warmup_steps=10, **kw)  # type: ignore[arg-type]


def test_constant_is_flat_after_warm_up() -> None:
    opts = _opts(steps=100)
    assert learning_rate(0, 0.0, opts) == pytest.approx(1e-4)
    assert learning_rate(50, 0.0, opts) == learning_rate(99, 0.0, opts) == pytest.approx(1e-3)


def test_cosine_falls_to_the_floor_at_the_end_of_the_steps() -> None:
    opts = _opts(steps=100, lr_schedule="cosine", lr_min_ratio=0.1)
    assert learning_rate(10, 0.0, opts) == pytest.approx(
        1e-3 * (0.1 + 0.9 * 0.5 * (1 + 0.951)), rel=1e-3
    )
    assert learning_rate(50, 0.0, opts) == pytest.approx(0.55e-3)
    assert learning_rate(100, 0.0, opts) == pytest.approx(1e-4)


def test_step_decay_by_the_minutes_budget() -> None:
    opts = _opts(minutes=10.0, lr_schedule="step", lr_gamma=0.1)
    assert learning_rate(20, 4 * 60.0, opts) == pytest.approx(1e-3)
    assert learning_rate(20, 5 * 60.0, opts) == pytest.approx(1e-4)
    assert learning_rate(20, 8 * 60.0, opts) == pytest.approx(1e-5)


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="lr_schedule"):
        _opts(steps=1, lr_schedule="linear")
    with pytest.raises(ValueError, match="lr_min_ratio"):
        _opts(steps=1, lr_min_ratio=2.0)
