"""Scene sampler: objects inside the image, apart, visible, relations true."""

from __future__ import annotations

import numpy as np
import pytest

from worker.shapes.scenes import sample_scene
from worker.shapes.vocabulary import SIZES, relation_between, size_class, visible_on


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("n_objects", [1, 2])
def test_scenes_are_well_formed(n_objects: int) -> None:
    rng = np.random.default_rng(n_objects)
    for _ in range(300):
        scene = sample_scene(rng, n_objects=n_objects)
        assert len(scene.objects) == n_objects
        for obj in scene.objects:
            x0, y0, x1, y1 = obj.box
            assert min(x0, y0) >= 0 and max(x1, y1) <= 1
            assert visible_on(obj.colour, scene.background)
            lo, hi = SIZES[obj.size]
            assert lo <= obj.extent <= hi and size_class(obj.extent) == obj.size
        if n_objects == 2:
            a, b = scene.objects
            assert not _overlap(a.box, b.box)
            assert scene.relation == relation_between((a.cx, a.cy), (b.cx, b.cy))
            assert (a.colour, a.shape) != (b.colour, b.shape)
        else:
            assert scene.relation is None


def test_bad_object_count_is_named() -> None:
    with pytest.raises(ValueError, match="got 3"):
        sample_scene(np.random.default_rng(0), n_objects=3)
