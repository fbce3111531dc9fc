"""Edge width: the 10-90% rise distance of known synthetic edges, and of real renders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from worker.shapes.edge_width import edge_width, scene_edge_width
from worker.shapes.rendering import render_scene, render_scene_float
from worker.shapes.scenes import Scene, SceneObject
from worker.unclip.nets.upsampler_net import resize_low_res

FG = np.array([255.0, 0.0, 0.0])
BG = np.array([0.0, 0.0, 255.0])


def _disc(fraction: np.ndarray) -> np.ndarray:
    """An RGB image (H, W, 3) that is `fraction` of the way from BG to FG."""
    return np.asarray(BG + fraction[..., None] * (FG - BG))


def _ramp_disc(width: float, size: int = 96, radius: float = 30.0) -> np.ndarray:
    """A disc whose edge rises linearly from 0 to 1 over `width` px, as a fraction map."""
    yy, xx = np.mgrid[:size, :size] + 0.5
    r = np.hypot(xx - size / 2, yy - size / 2)
    return np.asarray(np.clip((radius - r) / width + 0.5, 0.0, 1.0))


@pytest.mark.parametrize("width", [1.0, 2.0, 4.0])
def test_a_linear_ramp_measures_four_fifths_of_its_width(width: float) -> None:
    reference = _disc(_ramp_disc(0.5))
    measured = edge_width(_disc(_ramp_disc(width)), reference, FG, BG).width_px
    assert measured == pytest.approx(0.8 * width, rel=0.08)  # the 10-90% part of the ramp


def test_a_gaussian_blurred_edge_measures_its_10_90_distance() -> None:
    sharp = _ramp_disc(0.5)
    blurred = ndimage.gaussian_filter(sharp, 1.5)
    measured = edge_width(_disc(blurred), _disc(sharp), FG, BG).width_px
    assert measured == pytest.approx(2.563 * 1.5, rel=0.1)  # 2 * 1.2816 sigma


def test_renders_are_sharp_and_a_bicubic_enlargement_is_not() -> None:
    scene = Scene(
        background="blue", objects=(SceneObject("red", "square", "large", 0.5, 0.5, 0.43),)
    )
    true = scene_edge_width(render_scene_float(scene, 256), scene)
    low = torch.from_numpy(render_scene(scene, 64)).permute(2, 0, 1)[None].float() / 127.5 - 1
    up = (resize_low_res(low, 256).clamp(-1, 1) + 1) * 127.5
    bicubic = scene_edge_width(up[0].permute(1, 2, 0).numpy(), scene)
    assert true is not None and bicubic is not None
    assert true.width_px < 1.0 and bicubic.width_px > 2.5


def test_scenes_of_two_objects_are_skipped() -> None:
    two = Scene(
        background="blue",
        objects=(
            SceneObject("red", "square", "small", 0.3, 0.3, 0.2),
            SceneObject("green", "circle", "small", 0.7, 0.7, 0.2),
        ),
    )
    assert scene_edge_width(render_scene_float(two, 64), two) is None
