"""Scenes that make a caption true: the generator run backwards from what a caption states."""

from __future__ import annotations

import numpy as np

from worker.shapes.captions import CaptionFacts, ObjectFacts
from worker.shapes.scenes import Scene, SceneObject, place_object, relation_holds
from worker.shapes.vocabulary import BACKGROUNDS, SIZES, visible_on

_MAX_TRIES = 500


def _object(rng: np.random.Generator, facts: ObjectFacts) -> SceneObject | None:
    size = facts.size or list(SIZES)[int(rng.integers(len(SIZES)))]
    return place_object(rng, facts.colour, facts.shape, size, facts.position)


def scene_for(rng: np.random.Generator, facts: CaptionFacts) -> Scene:
    """A random scene of which every stated fact is true; raises if none is found."""
    colours = [o.colour for o in facts.objects]
    backgrounds = [b for b in BACKGROUNDS if all(visible_on(c, b) for c in colours)]
    if facts.background is not None:
        backgrounds = [b for b in backgrounds if b == facts.background]
    for _ in range(_MAX_TRIES):
        objects = [_object(rng, o) for o in facts.objects]
        if not backgrounds or any(o is None for o in objects):
            continue
        placed = tuple(o for o in objects if o is not None)
        if facts.relation is not None and not relation_holds(placed[0], placed[1], facts.relation):
            continue
        background = backgrounds[int(rng.integers(len(backgrounds)))]
        return Scene(background, placed, facts.relation)
    raise ValueError(f"no scene of this world makes {facts} true (tried {_MAX_TRIES} times)")
