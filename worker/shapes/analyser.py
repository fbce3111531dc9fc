"""Deterministic analyser: background, objects, and each object's colour, shape, size, place."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worker.shapes.components import label_components
from worker.shapes.shape_fit import fit_shape
from worker.shapes.vocabulary import (
    BACKGROUNDS,
    COLOURS,
    Relation,
    position_name,
    relation_between,
    size_class,
)

FOREGROUND_DISTANCE = 50.0  # RGB distance from the background that makes a pixel foreground
MIN_AREA_FRACTION = 0.004  # components smaller than this share of the image are specks
MAX_OBJECTS = 8  # only the largest components are read (noise can make hundreds)
SPLIT_SHARE = 0.25  # a second colour this common in one component splits it in two
EXTRAPOLATION_COST = 0.3  # colour distance charged per unit of ray extrapolation
PURE_DISTANCE = 60.0  # ... if both colours' interiors are this close to their palette colours

_BG_NAMES = list(BACKGROUNDS)
_BG_RGB = np.asarray([BACKGROUNDS[n] for n in _BG_NAMES], dtype=np.float32)
_OBJ_NAMES = list(COLOURS)
_OBJ_RGB = np.asarray([COLOURS[n] for n in _OBJ_NAMES], dtype=np.float32)


@dataclass(frozen=True)
class AnalysedObject:
    """One object found in an image; cx, cy, extent and area are fractions of the side/image."""

    colour: str
    shape: str
    size: str
    position: str
    cx: float
    cy: float
    extent: float
    area: float
    fit_error: float


@dataclass(frozen=True)
class AnalysedScene:
    """Background colour and objects, largest first."""

    background: str
    objects: tuple[AnalysedObject, ...]


def relation_of(a: AnalysedObject, b: AnalysedObject) -> Relation:
    """Relation of `a` to `b` along the axis where their centres differ most."""
    return relation_between((a.cx, a.cy), (b.cx, b.cy))


def _nearest(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour for each (..., 3) pixel."""
    d = ((pixels[..., None, :] - palette) ** 2).sum(axis=-1)
    return np.asarray(d.argmin(axis=-1))


def _unmixed_nearest(pixels: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Index of the object colour each (N, 3) pixel is most likely a blend of, over `bg`.

    An anti-aliased or blurred pixel lies on the segment from the background to the object
    colour, so compare palette colours with the ray from `bg` through the pixel (extended up
    to 3x), not with the pixel itself.
    """
    d = pixels - bg  # (N, 3)
    c = _OBJ_RGB - bg  # (K, 3)
    length2 = np.maximum((d * d).sum(axis=1, keepdims=True), 1e-6)  # (N, 1)
    t = np.clip((d @ c.T) / length2, 1.0, 3.0)  # (N, K)
    points = bg + t[..., None] * d[:, None, :]  # (N, K, 3)
    off_ray = np.sqrt(((points - _OBJ_RGB) ** 2).sum(axis=-1))
    # Red, orange and yellow lie on one line: prefer the least extrapolation among near ties.
    score = off_ray + EXTRAPOLATION_COST * (t - 1.0) * np.sqrt(length2)
    return np.asarray(score.argmin(axis=1))


def _background(image: np.ndarray) -> tuple[str, np.ndarray]:
    labels = _nearest(image, _BG_RGB)
    mode = int(np.bincount(labels.ravel(), minlength=len(_BG_NAMES)).argmax())
    return _BG_NAMES[mode], np.median(image[labels == mode], axis=0)


def _core_colour(pixels: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Median colour of the pixels farthest from the background: the object's interior."""
    return np.asarray(np.median(pixels[distance >= 0.8 * distance.max()], axis=0))


def _split_by_colour(
    image: np.ndarray, region: np.ndarray, distance: np.ndarray, bg: np.ndarray
) -> list[np.ndarray]:
    """One region, or two where it holds two objects of clearly different colours touching."""
    core = region & (distance >= 0.8 * distance[region].max())
    names = _unmixed_nearest(image[core], bg)
    counts = np.bincount(names, minlength=len(_OBJ_NAMES))
    first, second = np.argsort(counts)[::-1][:2]
    if counts[second] < SPLIT_SHARE * core.sum():
        return [region]
    two = _OBJ_RGB[[first, second]]
    for index, rgb in zip((first, second), two, strict=True):
        # Blurred edges mix colours: split only where both are really there, unmixed.
        median = np.median(image[core][names == index], axis=0)
        if np.linalg.norm(median - rgb) > PURE_DISTANCE:
            return [region]
    nearer_first = _nearest(image, two) == 0  # (H, W)
    return [region & nearer_first, region & ~nearer_first]


def _coverage(
    image: np.ndarray, region: np.ndarray, bg: np.ndarray, colour: np.ndarray, others: np.ndarray
) -> np.ndarray:
    """Per-pixel share of the object's colour over the background near `region`, in [0, 1]."""
    grown = region.copy()
    for _ in range(2):  # take in the faint anti-aliased rim below the foreground threshold
        grown[1:] |= grown[:-1].copy()
        grown[:-1] |= grown[1:].copy()
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
    grown &= ~others
    direction = colour - bg
    alpha = ((image - bg) @ direction) / max(float(direction @ direction), 1.0)
    return np.where(grown, np.clip(alpha, 0.0, 1.0), 0.0)


def _regions(image: np.ndarray, distance: np.ndarray, bg: np.ndarray) -> list[np.ndarray]:
    """Object masks, largest first, at most MAX_OBJECTS of them."""
    size = image.shape[0]
    labels, count = label_components(distance > FOREGROUND_DISTANCE)
    min_area = max(3.0, MIN_AREA_FRACTION * size * size)
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    regions: list[np.ndarray] = []
    for index in np.argsort(-areas, kind="stable")[:MAX_OBJECTS] + 1:
        if areas[index - 1] >= min_area:
            parts = _split_by_colour(image, labels == index, distance, bg)
            regions += [part for part in parts if part.sum() >= min_area]
    return regions


def analyse_image(image: np.ndarray) -> AnalysedScene:
    """Analyse an RGB uint8 or float (size, size, 3) image with values in 0..255."""
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1]:
        raise ValueError(f"expected a square RGB image (size, size, 3), got shape {image.shape}")
    image = image.astype(np.float32)
    size = image.shape[0]
    background, bg = _background(image)
    distance = np.linalg.norm(image - bg, axis=-1)
    regions = _regions(image, distance, bg)
    objects = []
    for i, region in enumerate(regions):
        others = np.zeros_like(region)
        for j, other in enumerate(regions):
            if j != i:
                others |= other
        colour = _core_colour(image[region], distance[region])
        alpha = _coverage(image, region, bg, colour, others)
        fit = fit_shape(alpha)
        objects.append(
            AnalysedObject(
                colour=_OBJ_NAMES[int(_unmixed_nearest(colour[None], bg)[0])],
                shape=fit.shape,
                size=size_class(fit.extent),
                position=position_name(fit.cx, fit.cy),
                cx=fit.cx,
                cy=fit.cy,
                extent=fit.extent,
                area=float(alpha.sum()) / size**2,
                fit_error=fit.error,
            )
        )
    objects.sort(key=lambda o: -o.area)
    return AnalysedScene(background, tuple(objects))
