"""The words of the shapes world: colours, shapes, sizes, positions and relations."""

from __future__ import annotations

import math
from typing import Literal

# CSS colours of the same name, exact sRGB values.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
# Backgrounds: the object palette plus gray.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {**COLOURS, "gray": (128, 128, 128)}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")

# Size class -> (lowest, highest) extent of the object as a fraction of the image side;
# the nominal spans are about 1/6, 1/3 and 1/2.
SIZES: dict[str, tuple[float, float]] = {
    "small": (0.15, 0.19),
    "medium": (0.30, 0.36),
    "large": (0.46, 0.52),
}
# Extent thresholds between size classes (geometric means of the nominal spans).
SIZE_THRESHOLDS: tuple[float, float] = (math.sqrt(1 / 18), math.sqrt(1 / 6))

# 3x3 grid: name -> (column, row), column 0 = left, row 0 = top.
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (1, 0),
    "top right": (2, 0),
    "left": (0, 1),
    "center": (1, 1),
    "right": (2, 1),
    "bottom left": (0, 2),
    "bottom": (1, 2),
    "bottom right": (2, 2),
}

Relation = Literal["left of", "right of", "above", "below"]
RELATIONS: tuple[Relation, ...] = ("left of", "right of", "above", "below")
INVERSE_RELATION: dict[Relation, Relation] = {
    "left of": "right of",
    "right of": "left of",
    "above": "below",
    "below": "above",
}

# An object colour must be at least this far (Euclidean RGB) from the background.
MIN_CONTRAST = 120.0


def colour_distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """Euclidean distance between two RGB colours (0..441)."""
    return math.dist(a, b)


def visible_on(colour: str, background: str) -> bool:
    """Whether an object of `colour` stands out enough on `background`."""
    return colour_distance(COLOURS[colour], BACKGROUNDS[background]) >= MIN_CONTRAST


def size_class(extent: float) -> str:
    """Size class of an object whose larger bounding-box side is `extent` of the image side."""
    if extent < SIZE_THRESHOLDS[0]:
        return "small"
    return "medium" if extent < SIZE_THRESHOLDS[1] else "large"


def position_name(cx: float, cy: float) -> str:
    """Name of the 3x3 cell holding the point (cx, cy), given as fractions of the side."""
    column = min(2, max(0, int(cx * 3)))
    row = min(2, max(0, int(cy * 3)))
    for name, cell in POSITIONS.items():
        if cell == (column, row):
            return name
    raise AssertionError("every cell has a name")


def relation_between(a: tuple[float, float], b: tuple[float, float]) -> Relation:
    """Relation of the object centred at `a` to the one at `b`, along the dominant axis."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


def article(word: str) -> str:
    """'a' or 'an' for the word that follows."""
    return "an" if word[:1] in "aeiou" else "a"
