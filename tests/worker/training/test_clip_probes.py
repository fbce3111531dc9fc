"""Scene probes: their targets describe the scene; the trained CLIP comes out without them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from worker.shapes.dataset import make_batch
from worker.shapes.vocabulary import BACKGROUNDS, COLOURS, SHAPES, SIZES
from worker.training.clip_probes import CELLS, SceneProbes, clip_state, scene_targets
from worker.training.data import SceneSource
from worker.training.loop import LoopOptions, run_training
from worker.training.train_clip import ClipTask, load_trained_clip


def test_targets_name_each_object_in_its_cell_and_none_elsewhere() -> None:
    batch = make_batch(np.random.default_rng(5), 40)
    targets = scene_targets(batch.scenes)
    for i, scene in enumerate(batch.scenes):
        assert tuple(BACKGROUNDS)[int(targets["background"][i])] == scene.background
        cells = {CELLS.index(o.position): o for o in scene.objects}
        for c in range(len(CELLS)):
            obj = cells.get(c)
            assert bool(targets["occupied"][i, c]) == (obj is not None)
            if obj is None:
                assert int(targets["colour"][i, c]) == 0 and int(targets["shape"][i, c]) == 0
                continue
            if len(cells) == len(scene.objects):  # no two objects share this cell
                assert tuple(COLOURS)[int(targets["colour"][i, c]) - 1] == obj.colour
                assert SHAPES[int(targets["shape"][i, c]) - 1] == obj.shape
                assert tuple(SIZES)[int(targets["size"][i, c]) - 1] == obj.size
                assert targets["geometry"][i, c].tolist() == pytest.approx(
                    [obj.cx, obj.cy, obj.extent], abs=1e-6)


def test_probe_loss_falls_on_separable_embeddings() -> None:
    torch.manual_seed(0)
    batch = make_batch(np.random.default_rng(1), 64, two_object_fraction=0.0)
    targets = scene_targets(batch.scenes)
    # an embedding that holds the answers: one-hot cell attributes, randomly rotated
    onehot = torch.cat([torch.nn.functional.one_hot(targets[k], 9).flatten(1).float()
                        for k in ("colour", "shape", "size")], dim=1)
    embedding = onehot @ torch.randn(onehot.shape[1], 64)
    probes = SceneProbes(64)
    opt = torch.optim.Adam(probes.parameters(), lr=1e-2)
    first = probes.loss(embedding, targets)[0].item()
    for _ in range(200):
        loss, _ = probes.loss(embedding, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss, metrics = probes.loss(embedding, targets)
    assert loss.item() < 0.2 * first
    assert metrics["probe_shape"] > 0.9


def test_clip_state_strips_the_probes() -> None:
    state = {"clip.visual.proj": torch.ones(1), "probes.background.weight": torch.ones(1)}
    assert list(clip_state(state)) == ["visual.proj"]
    plain = {"visual.proj": torch.ones(1)}
    assert clip_state(plain) is plain


def test_trained_clip_loads_without_probes(tiny: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = ClipTask(tiny.clip, SceneSource(8, sizes=(16,)))
    run_training(task, LoopOptions(out_dir=tmp_path, steps=2, precision="fp32", progress=False))
    encoder = load_trained_clip(tmp_path)
    assert not any("probes" in k for k in encoder.model.state_dict())
    assert set(encoder.model.state_dict()) == set(task.encoder.model.state_dict())


def test_negative_probe_weight_is_refused(tiny: Any) -> None:
    with pytest.raises(ValueError, match="probe_weight must be >= 0, got -1"):
        ClipTask(tiny.clip, SceneSource(8, sizes=(16,)), probe_weight=-1.0)
