"""Inputs for ShapeEval's variation, edit and retrieval sections, drawn from the generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.shapes.captions import CaptionFacts, ObjectFacts, describe_scene, write_caption
from worker.shapes.rendering import render_scene
from worker.shapes.scenes import SEEN_PAIRS, Scene, sample_scene
from worker.shapes.vocabulary import POSITIONS, visible_on

CASE_SEED = 20260402  # fixed, like the prompt set
MASK_MARGIN = 1 / 24  # the edit mask reaches this far (of the side) beyond cell and object


@dataclass(frozen=True)
class VariationCase:
    """A generated one-object scene and its render, to be varied."""

    scene: Scene
    image: np.ndarray  # (S, S, 3) uint8


@dataclass(frozen=True)
class EditCase:
    """Repaint the object's region of `image` with the object that `prompt` asks for."""

    scene: Scene
    image: np.ndarray  # (S, S, 3) uint8
    mask: np.ndarray  # (S, S) bool, True = repaint
    prompt: str
    colour: str
    shape: str


def variation_cases(count: int, size: int) -> list[VariationCase]:
    """`count` one-object scenes (seen pairs) rendered at `size` px."""
    rng = np.random.default_rng([CASE_SEED, 1])
    scenes = [sample_scene(rng, n_objects=1) for _ in range(count)]
    return [VariationCase(s, render_scene(s, size)) for s in scenes]


def edit_mask(scene: Scene, size: int) -> np.ndarray:
    """(size, size) bool: the object's 3x3 cell and its box, grown by MASK_MARGIN."""
    obj = scene.objects[0]
    column, row = POSITIONS[obj.position]
    x0, y0, x1, y1 = obj.box
    x0, y0 = min(x0, column / 3) - MASK_MARGIN, min(y0, row / 3) - MASK_MARGIN
    x1, y1 = max(x1, (column + 1) / 3) + MASK_MARGIN, max(y1, (row + 1) / 3) + MASK_MARGIN
    centres = (np.arange(size) + 0.5) / size
    inside_x = (centres >= x0) & (centres <= x1)
    inside_y = (centres >= y0) & (centres <= y1)
    return np.asarray(inside_y[:, None] & inside_x[None, :])


def _target(rng: np.random.Generator, scene: Scene) -> tuple[str, str]:
    obj = scene.objects[0]
    while True:
        colour, shape = SEEN_PAIRS[int(rng.integers(len(SEEN_PAIRS)))]
        if colour != obj.colour and visible_on(colour, scene.background):
            return colour, shape


def edit_cases(count: int, size: int) -> list[EditCase]:
    """`count` edits: a new colour (and often shape) in place of a scene's one object."""
    rng = np.random.default_rng([CASE_SEED, 2])
    cases = []
    for _ in range(count):
        scene = sample_scene(rng, n_objects=1)
        colour, shape = _target(rng, scene)
        obj = scene.objects[0]
        wanted = ObjectFacts(colour, shape, obj.size, obj.position)
        prompt = write_caption(CaptionFacts((wanted,), None, scene.background))
        image = render_scene(scene, size)
        cases.append(EditCase(scene, image, edit_mask(scene, size), prompt, colour, shape))
    return cases


def retrieval_captions(count: int) -> list[tuple[Scene, str]]:
    """`count` scenes (one and two objects, seen pairs) whose full captions are all different."""
    rng = np.random.default_rng([CASE_SEED, 3])
    chosen: dict[str, Scene] = {}
    while len(chosen) < count:
        scene = sample_scene(rng, n_objects=1 + int(rng.random() < 0.4))
        chosen.setdefault(write_caption(describe_scene(scene)), scene)
    return [(scene, caption) for caption, scene in chosen.items()]
