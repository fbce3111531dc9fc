"""Shape, extent and centre of one object from its coverage map, by moments and templates."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from worker.shapes.rendering import object_coverage
from worker.shapes.scenes import SceneObject
from worker.shapes.shape_masks import shape_moments
from worker.shapes.vocabulary import SHAPES

# Blur levels (pixels, Gaussian sigma) tried for each template: model renders are soft.
BLUR_SIGMAS: tuple[float, ...] = (0.0, 0.6, 1.2)


@dataclass(frozen=True)
class ShapeFit:
    """The best-fitting shape placed where the coverage's moments put it."""

    shape: str
    cx: float  # bounding-box centre, fraction of the side
    cy: float
    extent: float  # bounding-box side, fraction of the side
    error: float  # L1 misfit of coverage against the template, relative to the area


def _moments(alpha: np.ndarray) -> tuple[float, float, float]:
    """(area in pixels, centroid x, centroid y in pixels) of a coverage map."""
    area = float(alpha.sum())
    ys, xs = np.indices(alpha.shape)
    return area, float((alpha * (xs + 0.5)).sum() / area), float((alpha * (ys + 0.5)).sum() / area)


@lru_cache(maxsize=64)
def _blur_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) matrix G so that G @ image @ G.T is a Gaussian blur (edges renormalised)."""
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return np.asarray(weights / weights.sum(axis=1, keepdims=True))


def _template_error(alpha: np.ndarray, shape: str, cx: float, cy: float, extent: float) -> float:
    """Smallest L1 misfit between `alpha` and the shape's template over the blur levels."""
    size = alpha.shape[0]
    top, left, cover = object_coverage(SceneObject("white", shape, "", cx, cy, extent), size)
    template = np.zeros_like(alpha)
    template[top : top + cover.shape[0], left : left + cover.shape[1]] = cover
    errors = []
    for sigma in BLUR_SIGMAS:
        if sigma > 0:
            g = _blur_matrix(size, sigma)
            template_blurred = g @ template @ g.T
        else:
            template_blurred = template
        errors.append(float(np.abs(alpha - template_blurred).sum()))
    return min(errors)


def fit_shape(alpha: np.ndarray) -> ShapeFit:
    """Fit every shape to the coverage map `alpha` (size, size) in [0, 1]; keep the best.

    For each shape the area fixes the extent and the centroid fixes the box centre, so only
    the template comparison decides between shapes. Blur keeps area and centroid.
    """
    size = alpha.shape[0]
    area, mx, my = _moments(alpha)
    if area <= 0:
        raise ValueError("cannot fit a shape to an empty coverage map")
    best: ShapeFit | None = None
    for shape in SHAPES:
        moments = shape_moments(shape)
        extent = math.sqrt(area / moments.area) / size
        cx = mx / size - moments.centroid_x * extent
        cy = my / size - moments.centroid_y * extent
        error = _template_error(alpha, shape, cx, cy, extent) / area
        if best is None or error < best.error:
            best = ShapeFit(shape, cx, cy, extent, error)
    assert best is not None
    return best
