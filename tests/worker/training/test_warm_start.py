"""Warm starts: a stage begins from an exported family's weights; resuming ignores them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from worker.training.checkpoint import checkpoint_path, load_checkpoint
from worker.training.data import SceneSource
from worker.training.loop import LoopOptions, run_training
from worker.training.train_upsampler import UpsamplerTask

MakeTask = Callable[[str, Path], Any]


def target(task: Any) -> nn.Module:
    return task.encoder.model if task.stage == "clip" else task.model


def assert_holds(module: nn.Module, path: Path) -> None:
    stored = load_file(str(path))
    own = module.state_dict()
    assert set(stored) == set(own)
    for key, value in stored.items():
        torch.testing.assert_close(own[key].float(), value.float(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("stage", ["clip", "prior", "decoder", "upsampler"])
def test_warm_start_loads_the_family_weights(stage: str, tiny_family_dir: Path,
                                            make_task: MakeTask) -> None:
    torch.manual_seed(1)
    task = make_task(stage, tiny_family_dir)
    task.warm_start(tiny_family_dir)
    assert_holds(target(task), tiny_family_dir / f"{stage}.safetensors")


def test_prior_warm_start_keeps_the_family_embedding_stats(tiny_family_dir: Path,
                                                          make_task: MakeTask) -> None:
    task = make_task("prior", tiny_family_dir)
    stats = load_file(str(tiny_family_dir / "prior_stats.safetensors"))
    # recomputed from one batch of fresh scenes, the task's own stats differ from the family's
    assert not torch.equal(task.mean, stats["mean"])
    task.warm_start(tiny_family_dir)
    torch.testing.assert_close(task.mean, stats["mean"], rtol=0, atol=0)
    torch.testing.assert_close(task.std, stats["std"], rtol=0, atol=0)


@pytest.mark.parametrize("stage", ["clip", "upsampler"])
def test_zero_steps_with_init_adopts_the_family_weights(stage: str, tiny_family_dir: Path,
                                                        tmp_path: Path,
                                                        make_task: MakeTask) -> None:
    task = make_task(stage, tiny_family_dir)
    result = run_training(task, LoopOptions(out_dir=tmp_path, steps=0, precision="fp32",
                                            progress=False, init_from=tiny_family_dir))
    assert result.step == 0
    state = load_checkpoint(checkpoint_path(tmp_path))
    assert state.step == 0
    stored = load_file(str(tiny_family_dir / f"{stage}.safetensors"))
    shadow = state.ema["shadow"]
    prefix = "clip." if stage == "clip" else ""  # CLIP trains inside its probe wrapper
    for key, value in stored.items():
        assert torch.equal(shadow[prefix + key].to(value.dtype), value), key


def test_zero_steps_without_init_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="steps must be > 0"):
        LoopOptions(out_dir=tmp_path, steps=0)


def test_training_starts_from_the_family_and_resume_ignores_it(tiny_family_dir: Path,
                                                               tmp_path: Path,
                                                               make_task: MakeTask) -> None:
    torch.manual_seed(1)
    task = make_task("upsampler", tiny_family_dir)
    opts = LoopOptions(out_dir=tmp_path, steps=1, lr=1e-12, warmup_steps=1, precision="fp32",
                       progress=False, init_from=tiny_family_dir)
    run_training(task, opts)
    state = load_checkpoint(checkpoint_path(tmp_path))
    stored = load_file(str(tiny_family_dir / "upsampler.safetensors"))
    for key, value in stored.items():  # one step at lr 1e-12 moves nothing measurable
        torch.testing.assert_close(state.ema["shadow"][key].float(), value.float(),
                                   rtol=0, atol=1e-6)

    again = make_task("upsampler", tiny_family_dir)
    calls: list[Path] = []
    again.warm_start = calls.append  # type: ignore[method-assign]
    run_training(again, LoopOptions(out_dir=tmp_path, steps=2, resume=True, precision="fp32",
                                    progress=False, init_from=tiny_family_dir))
    assert calls == []  # the checkpoint, not the family, is where a resumed run continues


def test_a_family_of_another_config_is_refused(tiny: Any, tiny_family_dir: Path) -> None:
    task = UpsamplerTask(tiny.upsampler, SceneSource(4, sizes=(16, 8)))
    with pytest.raises(ValueError, match="does not fit this network"):
        task.warm_start(tiny_family_dir)


def test_missing_family_file_is_named(tiny: Any, tmp_path: Path) -> None:
    task = UpsamplerTask(tiny.upsampler, SceneSource(4, sizes=(16, 8)))
    with pytest.raises(FileNotFoundError, match="upsampler.safetensors not found"):
        task.warm_start(tmp_path)
