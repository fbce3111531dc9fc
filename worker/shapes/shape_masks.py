"""Shape outlines on the unit box, their supersampled masks (cached) and their moments."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from worker.shapes.vocabulary import SHAPES

STAR_INNER_RATIO = 0.42  # inner / outer radius of the five-pointed star
CROSS_ARM = 1 / 3  # width of each bar of the plus sign, as a fraction of its extent


def _star_polygon() -> np.ndarray:
    """Five-pointed star, one point up, scaled to fill the unit box [0, 1]^2 (y down)."""
    angles = -math.pi / 2 + np.arange(10) * math.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, STAR_INNER_RATIO)
    points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    low, high = points.min(axis=0), points.max(axis=0)
    span = (high - low).max()
    # Centre the smaller side so the star's bounding box is centred in the unit box.
    return np.asarray((points - low) / span + (1 - (high - low) / span) / 2)  # (10, 2)


def _inside_polygon(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon test, vectorised over the points."""
    inside = np.zeros(x.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_at)
    return inside


def inside_shape(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether the points (x, y) of the unit box lie inside `shape` (y grows downwards)."""
    if shape == "circle":
        return (x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25
    if shape == "square":
        return (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
    if shape == "triangle":  # apex at the top centre, base along the bottom
        return (y <= 1) & (np.abs(x - 0.5) <= y / 2)
    if shape == "star":
        return _inside_polygon(x, y, _star_polygon())
    if shape == "cross":
        lo, hi = (1 - CROSS_ARM) / 2, (1 + CROSS_ARM) / 2
        in_box = (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
        return in_box & (((x >= lo) & (x <= hi)) | ((y >= lo) & (y <= hi)))
    raise ValueError(f"unknown shape {shape!r}; allowed: {', '.join(SHAPES)}")


@lru_cache(maxsize=4096)
def shape_mask(shape: str, width: int) -> np.ndarray:
    """Boolean (width, width) mask of `shape` filling a box `width` pixels wide (read-only)."""
    if width < 1:
        raise ValueError(f"mask width must be >= 1, got {width}")
    centres = (np.arange(width) + 0.5) / width
    y, x = np.meshgrid(centres, centres, indexing="ij")
    mask = inside_shape(shape, x, y)
    mask.setflags(write=False)
    return mask


@dataclass(frozen=True)
class ShapeMoments:
    """Area and centroid of a shape filling the unit box: what the analyser fits against."""

    area: float  # fraction of the unit box covered
    centroid_x: float  # centroid minus box centre, in box widths
    centroid_y: float


@cache
def shape_moments(shape: str) -> ShapeMoments:
    """Moments of `shape`, measured on a fine mask."""
    mask = shape_mask(shape, 512).astype(np.float64)
    centres = (np.arange(512) + 0.5) / 512
    area = float(mask.mean())
    cx = float((mask.sum(axis=0) * centres).sum() / mask.sum()) - 0.5
    cy = float((mask.sum(axis=1) * centres).sum() / mask.sum()) - 0.5
    return ShapeMoments(area=area, centroid_x=cx, centroid_y=cy)
