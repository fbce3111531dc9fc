"""Analyser: recovers generated scenes exactly, and degrades gracefully on soft images."""

from __future__ import annotations

import numpy as np
import pytest

from worker.shapes.analyser import analyse_image, relation_of
from worker.shapes.components import label_components
from worker.shapes.rendering import render_scene
from worker.shapes.scenes import Scene, sample_scene


def _attributes(scene: Scene) -> list[tuple[str, str, str, str]]:
    return sorted((o.colour, o.shape, o.size, o.position) for o in scene.objects)


@pytest.mark.parametrize("size", [64, 32])
def test_recovers_generated_scenes_exactly(size: int) -> None:
    rng = np.random.default_rng(100 + size)
    for i in range(150 if size == 64 else 100):
        scene = sample_scene(rng, n_objects=1 + i % 2)
        found = analyse_image(render_scene(scene, size))
        assert found.background == scene.background, scene
        assert sorted((o.colour, o.shape, o.size, o.position) for o in found.objects) == (
            _attributes(scene)
        ), scene
        if scene.relation is not None:
            a, b = found.objects
            if (a.colour, a.shape) != (scene.objects[0].colour, scene.objects[0].shape):
                a, b = b, a
            assert relation_of(a, b) == scene.relation, scene


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    x = np.arange(-3, 4)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(image.astype(np.float32), ((3, 3), (3, 3), (0, 0)), mode="edge")
    rows = sum(k[i] * padded[i : i + image.shape[0]] for i in range(7))
    return sum(k[i] * rows[:, i : i + image.shape[1]] for i in range(7))


def test_soft_noisy_images_still_mostly_read_right() -> None:
    rng = np.random.default_rng(5)
    right = 0
    for _ in range(60):
        scene = sample_scene(rng, n_objects=1)
        image = _blur(render_scene(scene, 64), 0.8) + rng.normal(0, 8, (64, 64, 3))
        found = analyse_image(np.clip(image, 0, 255))
        right += len(found.objects) == 1 and _attributes(scene) == sorted(
            (o.colour, o.shape, o.size, o.position) for o in found.objects
        )
    assert right >= 57


def test_empty_image_has_no_objects() -> None:
    found = analyse_image(np.full((64, 64, 3), 128, dtype=np.uint8))
    assert found.background == "gray" and found.objects == ()


def test_components_are_8_connected() -> None:
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # a diagonal: one component
    mask[4:, 4:] = True
    mask[0, 5] = True
    labels, count = label_components(mask)
    assert count == 3
    assert labels[0, 0] == labels[2, 2] != labels[4, 4]


def test_bad_image_shape_is_named() -> None:
    with pytest.raises(ValueError, match=r"\(64, 32, 3\)"):
        analyse_image(np.zeros((64, 32, 3), dtype=np.uint8))
