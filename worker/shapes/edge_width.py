"""Edge width of a flat shape in an image: the mean 10-90% rise distance across its boundary.

For an object of colour F on a background B, each pixel's fraction f = (p - B).(F - B) /
|F - B|^2 is 0 on the background and 1 inside. Across any monotonic edge profile the band
0.1 < f < 0.9 is exactly as wide as the 10-90% rise distance, and the total variation of f
(sum of |grad f|) is the boundary's length. So

    width = (pixels with 0.1 < f < 0.9 near the boundary) / (boundary length)

is the length-weighted mean 10-90% rise distance, in pixels, for any shape. The length is
taken from the reference (the generator's anti-aliased render), so noise in the measured
image cannot shorten it; only pixels within `band` of the true boundary count, so noise far
from it cannot widen it. An ideal anti-aliased (box-filtered) edge measures ~0.8 px, a
bicubic 4x enlargement ~3 px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from worker.shapes.rendering import render_scene_float
from worker.shapes.scenes import Scene
from worker.shapes.vocabulary import BACKGROUNDS, COLOURS

BAND_PX = 4  # how far from the true boundary a transition pixel may lie
RISE = (0.1, 0.9)
MIN_CONTRAST = 80.0  # |F - B| in 0..255 below which a scene is skipped (fraction too noisy)


@dataclass(frozen=True)
class EdgeWidth:
    """Transition pixels and boundary length, summed over images; width = their ratio."""

    band_pixels: float
    length_px: float

    @property
    def width_px(self) -> float:
        return self.band_pixels / self.length_px if self.length_px > 0 else float("nan")

    def __add__(self, other: EdgeWidth) -> EdgeWidth:
        return EdgeWidth(self.band_pixels + other.band_pixels, self.length_px + other.length_px)


def fraction_map(image: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """(H, W) position of each pixel of image (H, W, 3), 0..255, between bg (0) and fg (1)."""
    d = np.asarray(fg, np.float64) - np.asarray(bg, np.float64)
    return ((np.asarray(image, np.float64) - bg) @ d) / float(d @ d)


def boundary_length(f: np.ndarray) -> float:
    """Total variation of a fraction map: the length in pixels of a 0 -> 1 boundary."""
    gy, gx = np.gradient(f)
    return float(np.hypot(gx, gy).sum())


def near_boundary(f_true: np.ndarray, band: int = BAND_PX) -> np.ndarray:
    """Bool (H, W): pixels within `band` of where the reference crosses one half."""
    inside = f_true > 0.5
    footprint = np.ones((2 * band + 1, 2 * band + 1), bool)
    return ndimage.binary_dilation(inside, footprint) & ~ndimage.binary_erosion(inside, footprint)


def edge_width(
    image: np.ndarray, reference: np.ndarray, fg: np.ndarray, bg: np.ndarray, band: int = BAND_PX
) -> EdgeWidth:
    """The edge width of the fg object in `image` against its true render `reference`."""
    f, f_true = fraction_map(image, fg, bg), fraction_map(reference, fg, bg)
    lo, hi = RISE
    transition = (f > lo) & (f < hi) & near_boundary(f_true, band)
    return EdgeWidth(float(transition.sum()), boundary_length(f_true))


def scene_edge_width(image: np.ndarray, scene: Scene) -> EdgeWidth | None:
    """Edge width of a one-object scene's object in `image` (H, W, 3); None if two objects or
    too little contrast between the object and the background to read a fraction."""
    if len(scene.objects) != 1:
        return None
    fg = np.asarray(COLOURS[scene.objects[0].colour], np.float64)
    bg = np.asarray(BACKGROUNDS[scene.background], np.float64)
    if np.linalg.norm(fg - bg) < MIN_CONTRAST:
        return None
    reference = render_scene_float(scene, image.shape[0])
    return edge_width(image, reference, fg, bg)
