"""The 64 -> 256 upsampler's degradation option: blur uses the stage's milder ranges, the
choice is checked, kept in the checkpoint, and a resume with another one is refused."""

from __future__ import annotations

import inspect

import pytest
import torch

from worker.training.data import SceneSource
from worker.training.degradation import CASCADE_BLUR, FIRST_UPSAMPLER_BLUR, Degradation
from worker.training.family_configs import shapes_upsampler256_config, shapes_upsampler_config
from worker.training.train_upsampler import UpsamplerTask, train_upsampler256


def _task(degradation: Degradation, crop: int = 32) -> UpsamplerTask:
    cfg = shapes_upsampler256_config()
    source = SceneSource(4, sizes=(cfg.image_size, cfg.low_res_size), seed=3)
    return UpsamplerTask(
        cfg, source, stage="upsampler256", degradation=degradation, crop=crop, seed=3
    )


def test_blur_uses_the_cascade_ranges_and_the_first_upsampler_keeps_its_own() -> None:
    assert _task("blur").blur == CASCADE_BLUR
    cfg = shapes_upsampler_config()
    first = UpsamplerTask(cfg, SceneSource(2, sizes=(cfg.image_size, cfg.low_res_size), seed=0))
    assert first.degradation == "blur" and first.blur == FIRST_UPSAMPLER_BLUR


def test_blur_inputs_are_crops_near_the_target_and_seeded_by_the_noise_generator() -> None:
    task = _task("blur", crop=64)
    x0, cond = task.inputs(5, torch.Generator().manual_seed(0))
    x0_again, cond_again = task.inputs(5, torch.Generator().manual_seed(0))
    assert x0.shape == cond.shape == (4, 3, 64, 64)
    assert torch.equal(x0, x0_again) and torch.equal(cond, cond_again)
    assert 0.0 < float((cond - x0).abs().mean()) < 0.3
    loss, metrics = task.loss(0, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and metrics == {}


def test_an_unknown_degradation_is_named() -> None:
    with pytest.raises(ValueError, match="unknown degradation 'jpeg'; allowed"):
        _task("jpeg")  # type: ignore[arg-type]


def test_the_degradation_is_checkpointed_and_a_mismatched_resume_refused() -> None:
    blur = _task("blur")
    assert blur.extra_state() == {"degradation": "blur"}
    blur.load_extra_state({"degradation": "blur"})
    with pytest.raises(ValueError, match=r"trained with degradation 'bsr'.*--degradation bsr"):
        blur.load_extra_state({"degradation": "bsr"})
    # a checkpoint from before the option: the 64 -> 256 stage trained on BSR only
    _task("bsr").load_extra_state({})
    with pytest.raises(ValueError, match="trained with degradation 'bsr'"):
        blur.load_extra_state({})


def test_the_stage_trains_on_the_cascade_blur_by_default() -> None:
    default = inspect.signature(train_upsampler256).parameters["degradation"].default
    assert default == "blur"
