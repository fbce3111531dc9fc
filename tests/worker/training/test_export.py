"""Export: a run folder whose stages adopted a family (--steps 0 --init) exports that family."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from worker.training.export import export_family
from worker.training.family_configs import shapes_family_defaults
from worker.training.loop import LoopOptions, run_training
from worker.training.train_family import STAGES, stage_dir


def test_adopted_stages_export_as_the_same_weights_with_the_shapes_defaults(
    tiny_family_dir: Path, tmp_path: Path, make_task: Callable[[str, Path], Any]
) -> None:
    run_dir = tmp_path / "run"
    for stage in STAGES:
        run_training(make_task(stage, tiny_family_dir),
                     LoopOptions(out_dir=stage_dir(run_dir, stage), steps=0, precision="fp32",
                                 progress=False, init_from=tiny_family_dir))
    dest = export_family(run_dir, tmp_path / "family")
    for stage in STAGES:
        before = load_file(str(tiny_family_dir / f"{stage}.safetensors"))
        after = load_file(str(dest / f"{stage}.safetensors"))
        assert set(after) == set(before), stage
        for key, value in before.items():
            torch.testing.assert_close(after[key].float(), value.float(), rtol=1e-3, atol=1e-3)
    stats, family_stats = (load_file(str(d / "prior_stats.safetensors"))
                           for d in (dest, tiny_family_dir))
    assert torch.equal(stats["mean"], family_stats["mean"])
    meta = json.loads((dest / "family.json").read_text())
    assert meta["defaults"] == shapes_family_defaults().to_dict()
    assert "| clip |" in (dest / "MODEL_CARD.md").read_text()


def test_a_stage_without_a_step_records_no_loss_and_valid_json(tmp_path: Path) -> None:
    """--steps 0 --init: no loss, written as null (JSON has no NaN), shown as "-" in the card."""
    from types import SimpleNamespace

    from worker.training.model_card import _loss
    from worker.training.train_family import StageReport, write_summary

    loop = SimpleNamespace(step=0, elapsed_s=0.5, loss=float("nan"), interrupted=False)
    opts = LoopOptions(out_dir=tmp_path, steps=1, precision="fp32", progress=False)
    write_summary(StageReport("clip", loop, {}), opts, 8)  # type: ignore[arg-type]
    text = (tmp_path / "summary.json").read_text()
    assert "NaN" not in text and json.loads(text)["final_loss_smooth"] is None
    assert _loss(None) == "-" and _loss(0.12345) == "0.1235"
