"""Scenes of one or two flat shapes on a flat background, drawn by a seeded sampler."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from worker.shapes.splits import HELDOUT_COMBINATIONS, HELDOUT_PAIRS, Split, check_split
from worker.shapes.vocabulary import (
    BACKGROUNDS,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Relation,
    position_name,
    relation_between,
    visible_on,
)

CELL_MARGIN = 0.04  # object centres keep this far (of the side) from cell borders
EDGE_MARGIN = 0.02  # objects keep this far from the image border
GAP = 0.04  # two objects' boxes are this far apart along their relation's axis
DOMINANCE = 2.0  # the relation's axis offset is at least this times the other one
_MAX_TRIES = 200

SEEN_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (c, s) for c in COLOURS for s in SHAPES if (c, s) not in HELDOUT_PAIRS
)
_POSITION_NAMES = tuple(POSITIONS)
HELDOUT_PAIR_LIST: tuple[tuple[str, str], ...] = tuple(sorted(HELDOUT_PAIRS))


@dataclass(frozen=True)
class SceneObject:
    """One flat shape; cx, cy (its bounding-box centre) and extent are fractions of the side."""

    colour: str
    shape: str
    size: str
    cx: float
    cy: float
    extent: float

    @property
    def position(self) -> str:
        return position_name(self.cx, self.cy)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the bounding box."""
        half = self.extent / 2
        return (self.cx - half, self.cy - half, self.cx + half, self.cy + half)


@dataclass(frozen=True)
class Scene:
    """A background and one or two objects; with two, `relation` holds of objects[0] to [1]."""

    background: str
    objects: tuple[SceneObject, ...]
    relation: Relation | None = None


def _centre_range(cell: int, half: float) -> tuple[float, float]:
    lo = max(cell / 3 + CELL_MARGIN, half + EDGE_MARGIN)
    hi = min((cell + 1) / 3 - CELL_MARGIN, 1 - half - EDGE_MARGIN)
    return lo, hi


def place_object(
    rng: np.random.Generator, colour: str, shape: str, size: str, position: str | None = None
) -> SceneObject | None:
    """An object of this size in the named (else a random) 3x3 cell; None if it cannot fit."""
    lo_e, hi_e = SIZES[size]
    extent = float(rng.uniform(lo_e, hi_e))
    if position is None:
        position = _POSITION_NAMES[int(rng.integers(len(_POSITION_NAMES)))]
    column, row = POSITIONS[position]
    x_lo, x_hi = _centre_range(column, extent / 2)
    y_lo, y_hi = _centre_range(row, extent / 2)
    if x_lo > x_hi or y_lo > y_hi:
        return None
    cx, cy = float(rng.uniform(x_lo, x_hi)), float(rng.uniform(y_lo, y_hi))
    return SceneObject(colour, shape, size, cx, cy, extent)


def _background(rng: np.random.Generator, colours: list[str]) -> str | None:
    options = _backgrounds_for(tuple(colours))
    return options[int(rng.integers(len(options)))] if options else None


@lru_cache(maxsize=256)
def _backgrounds_for(colours: tuple[str, ...]) -> tuple[str, ...]:
    """Backgrounds on which every one of `colours` is visible, in palette order."""
    return tuple(b for b in BACKGROUNDS if all(visible_on(c, b) for c in colours))


def _one_object_scene(rng: np.random.Generator, pair: tuple[str, str]) -> Scene:
    for _ in range(_MAX_TRIES):
        size = list(SIZES)[int(rng.integers(len(SIZES)))]
        placed = place_object(rng, pair[0], pair[1], size)
        background = _background(rng, [pair[0]])
        if placed is not None and background is not None:
            return Scene(background, (placed,))
    raise RuntimeError(f"could not place a {pair} scene in {_MAX_TRIES} tries")


def relation_holds(a: SceneObject, b: SceneObject, relation: Relation) -> bool:
    """a `relation` b with separated boxes along the relation's axis and a clear dominant axis."""
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.box, b.box
    dx, dy = abs(b.cx - a.cx), abs(b.cy - a.cy)
    if relation in ("left of", "right of"):
        separated = ax1 + GAP <= bx0 if relation == "left of" else bx1 + GAP <= ax0
        return separated and dx >= DOMINANCE * dy
    separated = ay1 + GAP <= by0 if relation == "above" else by1 + GAP <= ay0
    return separated and dy >= DOMINANCE * dx


def _two_object_scene(
    rng: np.random.Generator, pairs: tuple[tuple[str, str], tuple[str, str]]
) -> Scene:
    for _ in range(_MAX_TRIES):
        sizes = [list(SIZES)[int(i)] for i in rng.integers(len(SIZES), size=2)]
        a = place_object(rng, *pairs[0], sizes[0])
        b = place_object(rng, *pairs[1], sizes[1])
        background = _background(rng, [pairs[0][0], pairs[1][0]])
        if a is None or b is None or background is None:
            continue
        relation = relation_between((a.cx, a.cy), (b.cx, b.cy))
        if relation_holds(a, b, relation):
            return Scene(background, (a, b), relation)
    raise RuntimeError(f"could not place a {pairs} scene in {_MAX_TRIES} tries")


def _pick(rng: np.random.Generator, pairs: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    return pairs[int(rng.integers(len(pairs)))]


def _two_pairs(rng: np.random.Generator, split: Split) -> tuple[tuple[str, str], tuple[str, str]]:
    if split == "heldout" and rng.random() < 0.5:
        combinations = sorted(tuple(sorted(c)) for c in HELDOUT_COMBINATIONS)
        first, second = combinations[int(rng.integers(len(combinations)))]
        return (first, second) if rng.random() < 0.5 else (second, first)
    while True:
        if split == "heldout":  # one held-out pair beside a seen one, in either order
            first, second = _pick(rng, HELDOUT_PAIR_LIST), _pick(rng, SEEN_PAIRS)
            if rng.random() < 0.5:
                first, second = second, first
        else:
            first, second = _pick(rng, SEEN_PAIRS), _pick(rng, SEEN_PAIRS)
        if first != second and frozenset((first, second)) not in HELDOUT_COMBINATIONS:
            return first, second


def sample_scene(rng: np.random.Generator, *, n_objects: int, split: str = "train") -> Scene:
    """Draw one scene; training scenes never hold a held-out pair or combination."""
    split = check_split(split)
    if n_objects == 1:
        pairs = HELDOUT_PAIR_LIST if split == "heldout" else SEEN_PAIRS
        return _one_object_scene(rng, _pick(rng, pairs))
    if n_objects == 2:
        return _two_object_scene(rng, _two_pairs(rng, split))
    raise ValueError(f"n_objects must be 1 or 2, got {n_objects}")
