"""A few optimizer steps on fresh tiny networks lower each stage's loss on a fixed batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from worker.shapes.dataset import SceneBatch
from worker.training.data import SceneSource
from worker.training.loop import LoopOptions, StageTask, run_training
from worker.training.train_clip import ClipTask
from worker.training.train_decoder import DecoderTask
from worker.training.train_prior import PriorTask
from worker.training.train_upsampler import UpsamplerTask
from worker.unclip.clip_encoder import ClipEncoder


class FixedSource(SceneSource):
    """The same batch at every step, so that the loss can only fall by learning it."""

    def batch(self, step: int) -> SceneBatch:
        return super().batch(0)


def fixed_loss(task: StageTask) -> float:
    """The task's loss on step 0 with fixed noise, timesteps and dropout draws."""
    task.model.eval()
    with torch.no_grad():
        losses = [task.loss(0, torch.Generator().manual_seed(s))[0].item() for s in range(4)]
    task.model.train()
    return sum(losses) / len(losses)


def train_steps(task: StageTask, tmp_path: Path, steps: int, lr: float) -> None:
    opts = LoopOptions(out_dir=tmp_path / task.stage, steps=steps, lr=lr, warmup_steps=1,
                       precision="fp32", progress=False, checkpoint_every_s=1e9)
    run_training(task, opts)


def test_prior_loss_falls(tiny: Any, tiny_clip: ClipEncoder, tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = PriorTask(tiny.prior, tiny_clip, FixedSource(16, sizes=(16,)), stats_batches=2)
    before = fixed_loss(task)
    train_steps(task, tmp_path, 25, 2e-3)
    assert fixed_loss(task) < 0.7 * before


def test_decoder_loss_falls(tiny: Any, tiny_clip: ClipEncoder, tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = DecoderTask(tiny.decoder, tiny_clip, FixedSource(8, sizes=(16,)))
    before = fixed_loss(task)
    train_steps(task, tmp_path, 25, 2e-3)
    assert fixed_loss(task) < 0.8 * before


@pytest.mark.parametrize("stage", ["clip", "upsampler"])
def test_clip_and_upsampler_loss_falls(stage: str, tiny: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    task: StageTask
    if stage == "clip":
        task = ClipTask(tiny.clip, FixedSource(16, sizes=(16,)))
    else:
        task = UpsamplerTask(tiny.upsampler, FixedSource(8, sizes=(16, 8)))
    before = fixed_loss(task)
    train_steps(task, tmp_path, 20, 2e-3)
    assert fixed_loss(task) < 0.8 * before
