"""The 64 -> 256 upsampler's training task: aligned crops near objects, seeded BSR inputs."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch

from worker.training.data import SceneSource
from worker.training.family_configs import shapes_upsampler256_config
from worker.training.train_upsampler import UpsamplerLoss, UpsamplerTask, crop_origins


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


def test_l1_term_is_added_to_the_loss_and_reported() -> None:
    torch.manual_seed(0)
    cfg = shapes_upsampler256_config()
    source = SceneSource(4, sizes=(cfg.image_size, cfg.low_res_size), seed=3)
    plain = UpsamplerTask(cfg, source, stage="upsampler256", degradation="bsr", crop=32, seed=3)
    with_l1 = UpsamplerTask(cfg, source, stage="upsampler256", degradation="bsr", crop=32,
                            seed=3, loss_terms=UpsamplerLoss(l1_weight=2.0))
    with_l1.model.load_state_dict(plain.model.state_dict())
    base, none = plain.loss(0, torch.Generator().manual_seed(0))
    total, metrics = with_l1.loss(0, torch.Generator().manual_seed(0))
    assert none == {}
    assert metrics["mse"] == pytest.approx(base.item(), rel=1e-5)
    assert metrics["l1"] > 0
    assert total.item() == pytest.approx(base.item() + 2.0 * metrics["l1"], rel=1e-5)


def test_last_step_share_of_one_trains_every_row_at_the_last_timestep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task = UpsamplerTask(shapes_upsampler256_config(), SceneSource(4, sizes=(256, 64), seed=3),
                         stage="upsampler256", degradation="bsr", crop=32, seed=3,
                         loss_terms=UpsamplerLoss(last_step_share=1.0))
    seen: list[torch.Tensor] = []
    real = task.diffusion.training_losses

    def spy(model_fn: Any, x0: torch.Tensor, t: torch.Tensor, **kw: Any) -> Any:
        seen.append(t)
        return real(model_fn, x0, t, **kw)

    monkeypatch.setattr(task.diffusion, "training_losses", spy)
    task.loss(0, torch.Generator().manual_seed(0))
    assert seen[0].tolist() == [task.diffusion.num_timesteps - 1] * 4


@pytest.mark.parametrize(
    ("terms", "message"),
    [({"l1_weight": -1.0}, "l1_weight must be >= 0, got -1.0"),
     ({"last_step_share": 1.5}, "last_step_share must be in [0, 1], got 1.5")],
)
def test_bad_loss_terms_are_named(terms: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        UpsamplerLoss(**terms)
