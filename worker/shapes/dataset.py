"""Training batches of the shapes world: seeded scenes, their captions and their renders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from worker.shapes.captions import Caption, draw_caption
from worker.shapes.rendering import render_batch
from worker.shapes.scenes import Scene, sample_scene
from worker.shapes.splits import check_split

TWO_OBJECT_FRACTION = 0.4


@dataclass(frozen=True)
class SceneBatch:
    """Scenes with one caption each; `renders` maps each rendered size to uint8 (B, s, s, 3)."""

    images: np.ndarray  # (B, size, size, 3) uint8
    captions: list[str]
    scenes: list[Scene]
    renders: dict[int, np.ndarray]
    described: list[Caption] = field(default_factory=list)  # each caption's facts and phrasing


def sample_scenes(
    rng: np.random.Generator,
    count: int,
    *,
    split: str = "train",
    two_object_fraction: float = TWO_OBJECT_FRACTION,
) -> list[Scene]:
    """`count` scenes, each with two objects with probability `two_object_fraction`."""
    if not 0.0 <= two_object_fraction <= 1.0:
        raise ValueError(f"two_object_fraction must be in [0, 1], got {two_object_fraction}")
    counts = np.where(rng.random(count) < two_object_fraction, 2, 1)
    return [sample_scene(rng, n_objects=int(n), split=split) for n in counts]


def make_batch(
    rng: np.random.Generator,
    batch_size: int,
    *,
    size: int = 64,
    split: str = "train",
    sizes: Sequence[int] = (),
    two_object_fraction: float = TWO_OBJECT_FRACTION,
) -> SceneBatch:
    """A batch of fresh scenes rendered at `size` (and at every size in `sizes`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    split = check_split(split)
    scenes = sample_scenes(rng, batch_size, split=split, two_object_fraction=two_object_fraction)
    described = [draw_caption(scene, rng) for scene in scenes]
    renders = {s: render_batch(scenes, s) for s in dict.fromkeys([size, *sizes])}
    return SceneBatch(images=renders[size], captions=[c.text for c in described], scenes=scenes,
                      renders=renders, described=described)
