"""A cut-off run resumes from its checkpoint: same steps, same weights as an uninterrupted run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from worker.training.checkpoint import checkpoint_path, load_checkpoint
from worker.training.data import SceneSource
from worker.training.loop import LoopOptions, run_training
from worker.training.train_upsampler import UpsamplerTask


def make_task(tiny: Any) -> UpsamplerTask:
    torch.manual_seed(0)  # the same initial weights for every run
    return UpsamplerTask(tiny.upsampler, SceneSource(4, sizes=(16, 8), seed=3))


def options(out: Path, steps: int, *, resume: bool = False) -> LoopOptions:
    return LoopOptions(out_dir=out, steps=steps, resume=resume, lr=1e-3, warmup_steps=2,
                       precision="fp32", progress=False, checkpoint_every_s=1e9)


def test_resumed_run_equals_uninterrupted_run(tiny: Any, tmp_path: Path) -> None:
    whole = make_task(tiny)
    run_training(whole, options(tmp_path / "whole", 6))

    first = make_task(tiny)
    result = run_training(first, options(tmp_path / "cut", 3))
    assert result.step == 3
    second = make_task(tiny)  # a fresh process: new random weights until the checkpoint loads
    result = run_training(second, options(tmp_path / "cut", 6, resume=True))
    assert result.step == 6

    state = load_checkpoint(checkpoint_path(tmp_path / "cut"))
    assert state.step == 6
    reference = whole.model.state_dict()
    for name, value in second.model.state_dict().items():
        assert torch.equal(value, reference[name]), name
    ema_ref = load_checkpoint(checkpoint_path(tmp_path / "whole")).ema["shadow"]
    for name, value in state.ema["shadow"].items():
        assert torch.equal(value, ema_ref[name]), name


def test_existing_checkpoint_needs_resume(tiny: Any, tmp_path: Path) -> None:
    run_training(make_task(tiny), options(tmp_path, 1))
    with pytest.raises(FileExistsError, match="--resume"):
        run_training(make_task(tiny), options(tmp_path, 2))


def test_resume_refuses_another_config(tiny: Any, tmp_path: Path) -> None:
    run_training(make_task(tiny), options(tmp_path, 1))
    other = UpsamplerTask(
        type(tiny.upsampler).from_dict({**tiny.upsampler.to_dict(), "model_channels": 64}),
        SceneSource(4, sizes=(16, 8)),
    )
    with pytest.raises(ValueError, match="another config"):
        run_training(other, options(tmp_path, 2, resume=True))


def test_finished_budget_trains_no_more(tiny: Any, tmp_path: Path) -> None:
    run_training(make_task(tiny), options(tmp_path, 2))
    before = load_checkpoint(checkpoint_path(tmp_path)).model
    result = run_training(make_task(tiny), options(tmp_path, 2, resume=True))
    assert result.step == 2
    after = load_checkpoint(checkpoint_path(tmp_path)).model
    assert all(torch.equal(before[k], after[k]) for k in before)
