"""Renders: exact CSS colours inside, anti-aliased edges, any size."""

from __future__ import annotations

import numpy as np
import pytest

from worker.shapes.rendering import render_scene
from worker.shapes.scenes import Scene, SceneObject
from worker.shapes.vocabulary import BACKGROUNDS, COLOURS

SCENE = Scene("white", (SceneObject("orange", "circle", "large", 0.5, 0.5, 0.5),))


@pytest.mark.parametrize("size", [32, 64, 100])
def test_exact_colours_and_anti_aliased_edge(size: int) -> None:
    image = render_scene(SCENE, size)
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert tuple(image[size // 2, size // 2]) == COLOURS["orange"]
    assert tuple(image[0, 0]) == BACKGROUNDS["white"]
    colours = {tuple(p) for p in image.reshape(-1, 3)}
    assert len(colours) > 2  # edge pixels blend the two
    # Area of the disc, pi r^2 with r = size / 4, read back from the blend.
    orange, white = np.array(COLOURS["orange"]), np.array(BACKGROUNDS["white"])
    cover = (image[..., 2].astype(float) - white[2]) / (orange[2] - white[2])
    assert cover.sum() == pytest.approx(np.pi * (size / 4) ** 2, rel=0.02)


def test_shapes_look_different() -> None:
    renders = {
        shape: render_scene(
            Scene("black", (SceneObject("white", shape, "large", 0.5, 0.5, 0.5),)), 64
        )
        for shape in ("circle", "square", "triangle", "star", "cross")
    }
    areas = {shape: float(r[..., 0].sum()) / 255 / 1024 for shape, r in renders.items()}
    assert areas["square"] == pytest.approx(1.0, abs=0.02)
    assert areas["triangle"] == pytest.approx(0.5, abs=0.02)
    assert areas["star"] < areas["cross"] < areas["circle"] < areas["square"]
    top_row = renders["triangle"][16:20, :, 0] > 128  # apex up: narrow at the top
    bottom_row = renders["triangle"][44:48, :, 0] > 128
    assert top_row.sum() < bottom_row.sum()


def test_tiny_size_is_refused() -> None:
    with pytest.raises(ValueError, match="got 4"):
        render_scene(SCENE, 4)
