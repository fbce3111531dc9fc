"""Anti-aliased renders of scenes: supersampled shape masks averaged down, exact CSS colours."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from worker.shapes.scenes import Scene, SceneObject
from worker.shapes.shape_masks import shape_mask
from worker.shapes.vocabulary import BACKGROUNDS, COLOURS

SUPERSAMPLED_SIDE = 256  # supersample until the fine grid is at least this many pixels
_COLOUR_ARRAYS = {name: np.asarray(rgb, dtype=np.float32) for name, rgb in COLOURS.items()}


def supersampling(size: int) -> int:
    """Subpixels per pixel side used when rendering at `size` pixels."""
    return max(4, math.ceil(SUPERSAMPLED_SIDE / size))


@lru_cache(maxsize=16384)
def _window_coverage(shape: str, width: int, dx: int, dy: int, ss: int) -> np.ndarray:
    """Coverage of a shape `width` subpixels wide starting (dx, dy) subpixels into a pixel."""
    cells = -(-(dx + width) // ss), -(-(dy + width) // ss)
    window = np.zeros((cells[1] * ss, cells[0] * ss), dtype=np.float32)
    window[dy : dy + width, dx : dx + width] = shape_mask(shape, width)
    coverage = np.asarray(window.reshape(cells[1], ss, cells[0], ss).sum(axis=(1, 3)) / ss**2)
    coverage.setflags(write=False)
    return coverage  # (h, w)


def object_coverage(obj: SceneObject, size: int) -> tuple[int, int, np.ndarray]:
    """(top, left, coverage): the fraction of each pixel in a window that the object covers."""
    ss = supersampling(size)
    fine = size * ss
    width = max(1, round(obj.extent * fine))
    x0 = round((obj.cx - obj.extent / 2) * fine)
    y0 = round((obj.cy - obj.extent / 2) * fine)
    top, left = y0 // ss, x0 // ss
    coverage = _window_coverage(obj.shape, width, x0 - left * ss, y0 - top * ss, ss)
    h, w = coverage.shape
    # Clip the window to the image (objects sit inside it, but be safe at any size).
    t, le = max(0, -top), max(0, -left)
    b, r = h - max(0, top + h - size), w - max(0, left + w - size)
    return top + t, left + le, coverage[t:b, le:r]


def _check_size(size: int) -> None:
    if size < 8:
        raise ValueError(f"render size must be >= 8 pixels, got {size}")


def _paint(image: np.ndarray, scene: Scene) -> None:
    """Composite the scene's objects over `image` (size, size, 3) float32, filled with its bg."""
    size = image.shape[0]
    for obj in scene.objects:
        top, left, cover = object_coverage(obj, size)
        patch = image[top : top + cover.shape[0], left : left + cover.shape[1]]
        patch += cover[..., None] * (_COLOUR_ARRAYS[obj.colour] - patch)


def render_batch(scenes: Sequence[Scene], size: int) -> np.ndarray:
    """uint8 (B, size, size, 3) renders of `scenes`."""
    _check_size(size)
    images = np.empty((len(scenes), size, size, 3), dtype=np.float32)
    images[:] = np.asarray([BACKGROUNDS[s.background] for s in scenes], np.float32)[:, None, None]
    for image, scene in zip(images, scenes, strict=True):
        _paint(image, scene)
    return np.rint(images).astype(np.uint8)


def render_scene_float(scene: Scene, size: int) -> np.ndarray:
    """Float32 (size, size, 3) render in 0..255 before rounding."""
    _check_size(size)
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = np.asarray(BACKGROUNDS[scene.background], dtype=np.float32)
    _paint(image, scene)
    return image


def render_scene(scene: Scene, size: int) -> np.ndarray:
    """uint8 RGB (size, size, 3) render of `scene`."""
    return np.asarray(render_batch([scene], size)[0])
