"""Adding a trained 64 -> 128 upsampler to a family: new files only, and it loads as a cascade."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

from shared.family_info import read_family_info
from worker.training.data import SceneSource
from worker.training.export import add_cascade_upsampler
from worker.training.loop import LoopOptions, run_training
from worker.training.train_upsampler import UpsamplerTask
from worker.unclip.configs import DiffusionConfig, UpsamplerConfig
from worker.unclip.family import load_family


def _md5s(root: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in root.iterdir()}


def test_a_trained_cascade_upsampler_is_added_and_loads(
    tiny_family_dir: Path, tmp_path: Path
) -> None:
    cfg = UpsamplerConfig(
        image_size=128,
        low_res_size=64,
        model_channels=32,
        channel_mult=(1, 1),
        num_res_blocks=1,
        last_step_model=False,
        patch_size=2,
        residual=True,
        diffusion=DiffusionConfig("cosine", 1000, "x0", "fixed_small"),
    )
    torch.manual_seed(0)
    task = UpsamplerTask(
        cfg,
        SceneSource(2, sizes=(128, 64), seed=0),
        stage="upsampler256",
        degradation="bsr",
        crop=32,
    )
    stage = tmp_path / "run" / "upsampler256"
    run_training(task, LoopOptions(out_dir=stage, steps=2, progress=False, warmup_steps=1))
    family_dir = tmp_path / "family"
    shutil.copytree(tiny_family_dir, family_dir)
    before = _md5s(family_dir)
    add_cascade_upsampler(stage, family_dir, steps=2)
    after = _md5s(family_dir)
    changed = {name for name in after if before.get(name) != after[name]}
    assert changed == {"family.json", "upsampler128.json", "upsampler128.safetensors"}
    meta = json.loads((family_dir / "family.json").read_text())
    assert meta["native_sizes"] == ["64x64", "128x128"] and meta["native_size"] == "128x128"
    assert meta["defaults"]["cascade_steps"] == {"upsampler128": 2}
    family = load_family(family_dir)
    assert family.native_sides == (64, 128) and family.defaults.cascade_steps == {"upsampler128": 2}
    assert read_family_info(family_dir).native_size_for("512x512") == "128x128"
