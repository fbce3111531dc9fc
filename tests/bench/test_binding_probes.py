"""Binding probes: twins of the probe scenes, the bound-colour probe, and the bench end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from bench import binding_probes
from worker.evaluation.binding_clip import (
    BoundColourProbe,
    probe_scenes,
    scene_order,
)
from worker.shapes.caption_parser import parse_caption
from worker.shapes.vocabulary import COLOURS
from worker.training.data import SceneSource
from worker.training.loop import LoopOptions, run_training
from worker.training.train_clip import ClipTask
from worker.unclip.family import load_family


def test_probe_scenes_have_colour_and_shape_twins_in_canonical_words() -> None:
    scenes = probe_scenes(20)
    assert probe_scenes(20) == scenes  # fixed seed
    for probe in scenes:
        a, b = probe.scene.objects
        assert a.colour != b.colour and a.shape != b.shape
        assert parse_caption(probe.caption.text) == probe.caption.facts
        assert all(o.size is None for o in probe.caption.facts.objects)
        colours = probe.twins["colours"]
        assert colours.scene is not None and colours.scene.objects[0].colour == b.colour
        assert parse_caption(colours.caption.text).objects[0].colour == b.colour
        assert probe.twins["relation"].caption.facts.relation != probe.scene.relation


def test_bound_colour_probe_reads_ordered_colours_and_tells_a_swap() -> None:
    torch.manual_seed(0)
    scenes = [p.scene for p in probe_scenes(300)]
    names = tuple(COLOURS)

    def embed(orders: list[tuple[str, str]]) -> torch.Tensor:
        ids = torch.tensor([[names.index(c) for c in o] for o in orders])
        onehot = torch.cat([torch.nn.functional.one_hot(ids[:, i], 8) for i in (0, 1)], 1)
        return onehot.float() @ rotation

    rotation = torch.randn(16, 32)
    orders = [scene_order(s) for s in scenes]
    probe = BoundColourProbe(embed(orders[:200]), scenes[:200])
    held = orders[200:]
    assert sum(r == o for r, o in zip(probe.read(embed(held)), held, strict=True)) >= 95
    swapped = [o[::-1] for o in held]
    assert sum(r == o for r, o in zip(probe.read(embed(swapped)), held, strict=True)) <= 5


@pytest.fixture
def run_with_clip(tiny_family_dir: Path, tmp_path: Path) -> Path:
    """A run folder holding only a CLIP checkpoint (the family's CLIP, adopted at step 0)."""
    family = load_family(tiny_family_dir)
    task = ClipTask(family.clip_config, SceneSource(4, sizes=(family.clip_config.image_size,)))
    run_training(
        task,
        LoopOptions(
            out_dir=tmp_path / "run" / "clip", steps=0, init_from=tiny_family_dir, progress=False
        ),
    )
    return tmp_path / "run"


def test_bench_measures_every_stage_and_skips_a_mismatched_prior(
    tiny_family_dir: Path,
    run_with_clip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "probes.json"
    argv = [
        "binding_probes.py",
        "--family",
        str(tiny_family_dir),
        "--run",
        str(run_with_clip),
        "--n",
        "6",
        "--stage-n",
        "2",
        "--out",
        str(out),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    binding_probes.main()
    family, run = json.loads(out.read_text())["models"]
    assert family["swapped_in"] == [] and run["swapped_in"] == ["clip"]
    for record in (family, run):
        clip = record["clip"]
        assert clip["n"] == 6 and set(clip["text_cosine"]) == {"colours", "shapes", "relation"}
        assert all(-1.0 <= v <= 1.0 for v in clip["text_cosine"].values())
        assert 0.0 <= clip["bound_colour_probe"] <= 1.0
    assert family["prior"]["n"] == family["decoder"]["n"] == family["small_shapes"]["n"] == 2
    # The run's CLIP is new to the family's prior and decoder: their probes are not run.
    assert run["skipped"] == ["prior", "decoder", "small_shapes"] and run["prior"] is None
    # Same weights (adopted at step 0): the CLIP probes agree.
    assert run["clip"]["text_cosine"] == pytest.approx(family["clip"]["text_cosine"], abs=1e-4)
    assert "bound-colour linear probe" in capsys.readouterr().out
