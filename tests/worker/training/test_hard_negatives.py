"""NegCLIP hard negatives: twins true of their renders, never held out, and used by the loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from worker.shapes.analyser import analyse_image
from worker.shapes.caption_parser import parse_caption
from worker.shapes.dataset import make_batch
from worker.shapes.rendering import render_scene
from worker.shapes.splits import is_heldout
from worker.shapes.vocabulary import INVERSE_RELATION
from worker.training.data import SceneSource
from worker.training.hard_negatives import hard_negatives, negclip_loss
from worker.training.loop import LoopOptions, run_training
from worker.training.train_clip import ClipTask


def _batch() -> Any:
    return make_batch(np.random.default_rng(4), 200, two_object_fraction=1.0)


def test_twins_state_what_their_renders_show_and_differ_from_the_source() -> None:
    batch = _batch()
    twins = hard_negatives(batch, np.random.default_rng(0), per_scene=3)
    kinds = {t.kind for t in twins}
    assert kinds == {"colours", "shapes", "relation"}
    for twin in twins:
        source, facts = batch.scenes[twin.source], parse_caption(twin.caption.text)
        assert facts == twin.caption.facts != batch.described[twin.source].facts
        if twin.kind == "relation":
            assert facts.relation == INVERSE_RELATION[source.relation or "above"]
        if twin.scene is None:
            continue
        assert not is_heldout([(o.colour, o.shape) for o in twin.scene.objects])
        found = analyse_image(render_scene(twin.scene, 64))
        assert sorted((o.colour, o.shape) for o in found.objects) == sorted(
            (o.colour, o.shape) for o in facts.objects
        )
        assert twin.scene.relation == facts.relation


def test_twins_are_drawn_only_for_two_object_scenes_and_never_held_out() -> None:
    batch = make_batch(np.random.default_rng(2), 300)
    twins = hard_negatives(batch, np.random.default_rng(1))
    assert twins and len(twins) <= sum(len(s.objects) == 2 for s in batch.scenes)
    assert all(len(batch.scenes[t.source].objects) == 2 for t in twins)
    for twin in twins:
        assert not is_heldout([(o.colour, o.shape) for o in twin.caption.facts.objects])


def test_negclip_loss_rises_when_an_extra_negative_matches_the_image() -> None:
    torch.manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    text = torch.nn.functional.normalize(image + 0.3 * torch.randn(4, 16), dim=-1)
    scale = torch.tensor(20.0)
    far = torch.cat([text, -image[:1]])
    near = torch.cat([text, image[:1]])
    assert negclip_loss(image, near, scale) > negclip_loss(image, far, scale)
    assert negclip_loss(image, text, scale) == pytest.approx(
        float(negclip_loss(image, far, scale)), abs=0.05
    )


def test_clip_trains_with_hard_negatives_and_resumes_only_the_same_way(
    tiny: Any, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    task = ClipTask(tiny.clip, SceneSource(8, sizes=(16,)), hard_negatives=True)
    _, metrics = task.loss(0, torch.Generator())
    assert metrics["hard_negatives"] > 0
    run_training(task, LoopOptions(out_dir=tmp_path, steps=1, precision="fp32", progress=False))
    plain = ClipTask(tiny.clip, SceneSource(8, sizes=(16,)))
    with pytest.raises(ValueError, match="hard_negatives=True"):
        run_training(
            plain,
            LoopOptions(out_dir=tmp_path, steps=2, resume=True, precision="fp32", progress=False),
        )


def test_train_command_takes_hard_negatives_for_clip_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.cli import main

    argv = ["train", "prior", "--out", str(tmp_path), "--steps", "1", "--hard-negatives"]
    assert main(argv) == 2
    assert "--hard-negatives is a clip option, got stage 'prior'" in capsys.readouterr().err
