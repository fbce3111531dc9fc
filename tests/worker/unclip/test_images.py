"""images.py: exact pixel round trips, mask conventions, and resizing to a family's sizes."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from worker.unclip.images import edit_repaint_mask, image_to_tensor, keep_at, to_pil_images


def _noise_image(size: int, mode: str = "RGB", seed: int = 0) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    channels = len(mode)
    array = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
    return PIL.Image.fromarray(array, mode=mode)


def test_pixels_round_trip_exactly() -> None:
    image = _noise_image(16)
    x = image_to_tensor(image, 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    back = to_pil_images(x[None])[0]
    assert back.mode == "RGB" and np.array_equal(np.asarray(back), np.asarray(image))


def test_inputs_are_cropped_square_and_resized() -> None:
    wide = PIL.Image.new("RGB", (40, 20), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 10, 20))  # a blue strip cropped away by the centre square
    x = image_to_tensor(wide, 8)
    assert x.shape == (3, 8, 8)
    assert torch.allclose(x[0], torch.ones(8, 8)) and torch.allclose(x[2], -torch.ones(8, 8))


def test_rgba_mask_alpha_zero_marks_the_repaint_area() -> None:
    mask = PIL.Image.new("RGBA", (8, 8), (0, 0, 0, 255))
    mask.paste((255, 255, 255, 0), (0, 0, 4, 8))  # left half transparent
    repaint = edit_repaint_mask(_noise_image(8), mask, 8)
    assert repaint.shape == (1, 8, 8) and repaint.dtype == torch.bool
    assert repaint[0, :, :4].all() and not repaint[0, :, 4:].any()


@pytest.mark.parametrize("mode", ["L", "RGB", "1"])
def test_grey_or_rgb_mask_white_marks_the_repaint_area(mode: str) -> None:
    mask = PIL.Image.new("L", (8, 8), 0)
    mask.paste(255, (0, 0, 8, 2))  # top two rows white
    repaint = edit_repaint_mask(_noise_image(8), mask.convert(mode), 8)
    assert repaint[0, :2].all() and not repaint[0, 2:].any()


def test_rgba_edit_image_without_mask_uses_its_alpha() -> None:
    image = _noise_image(8, "RGBA")
    alpha = np.full((8, 8), 255, dtype=np.uint8)
    alpha[5:, 5:] = 0
    image.putalpha(PIL.Image.fromarray(alpha))
    repaint = edit_repaint_mask(image, None, 16)  # read at twice the size
    assert repaint.shape == (1, 16, 16)
    assert int(repaint.sum()) == 3 * 3 * 4 and repaint[0, 10:, 10:].all()


def test_mask_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="an edit needs a mask"):
        edit_repaint_mask(_noise_image(8), None, 8)
    with pytest.raises(ValueError, match=r"mask size \(4, 4\) must equal the image size"):
        edit_repaint_mask(_noise_image(8), PIL.Image.new("L", (4, 4)), 8)


def test_low_resolution_keep_is_conservative() -> None:
    repaint = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    repaint[0, 0, 0, 0] = True  # one repainted pixel
    keep = keep_at(repaint, 4)
    assert keep.shape == (1, 1, 4, 4)
    assert float(keep[0, 0, 0, 0]) == 0.0 and float(keep.sum()) == 15.0
    assert torch.equal(keep_at(repaint, 8), 1.0 - repaint.float())


def test_to_pil_images_checks_the_shape() -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\) tensor, got shape \(3, 4, 4\)"):
        to_pil_images(torch.zeros(3, 4, 4))
