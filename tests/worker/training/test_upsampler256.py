"""The 64 -> 256 upsampler's training task: aligned crops near objects, seeded BSR inputs."""

from __future__ import annotations

import numpy as np
import torch

from worker.training.data import SceneSource
from worker.training.family_configs import shapes_upsampler256_config
from worker.training.train_upsampler import UpsamplerTask, crop_origins


def _task(crop: int = 64) -> UpsamplerTask:
    cfg = shapes_upsampler256_config()
    source = SceneSource(4, sizes=(cfg.image_size, cfg.low_res_size), seed=3)
    return UpsamplerTask(cfg, source, stage="upsampler256", degradation="bsr", crop=crop, seed=3)


def test_crops_are_aligned_inside_and_mostly_over_an_object() -> None:
    source = SceneSource(64, sizes=(256,), seed=1)
    scenes = source.batch(0).scenes
    origins = crop_origins(scenes, 256, 64, np.random.default_rng(0), align=4)
    assert all(t % 4 == 0 and le % 4 == 0 and 0 <= t <= 192 and 0 <= le <= 192 for t, le in origins)
    near = 0
    for scene, (t, le) in zip(scenes, origins, strict=True):
        near += any(
            abs(o.cx * 256 - (le + 32)) < 32 + o.extent * 128
            and abs(o.cy * 256 - (t + 32)) < 32 + o.extent * 128
            for o in scene.objects
        )
    assert near >= 0.7 * len(scenes)


def test_inputs_are_crops_of_the_target_and_its_condition_and_repeat_per_step() -> None:
    task = _task()
    x0, cond = task.inputs(5, torch.Generator().manual_seed(0))
    again, cond_again = task.inputs(5, torch.Generator().manual_seed(1))
    assert x0.shape == cond.shape == (4, 3, 64, 64)
    assert torch.equal(x0, again) and torch.equal(cond, cond_again)  # a resumed step: the same
    assert float(x0.min()) >= -1.0 and float(x0.max()) <= 1.0
    # The condition is the degraded low-res crop: close to the target, not equal to it.
    assert 0.0 < float((cond - x0).abs().mean()) < 0.3


def test_one_training_step_gives_a_finite_loss() -> None:
    torch.manual_seed(0)
    task = _task(crop=32)
    loss, _ = task.loss(0, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss.item() > 0
