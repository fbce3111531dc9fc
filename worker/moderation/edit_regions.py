"""The part of an edit's output that the mask repainted: its crop, and what changed there.

An edit is how a harmless photo becomes a harmful one, and a small repainted region can hide in
the whole-image score. So the region is also scored on its own, at the checker's input size:
the crop of the output around the repainted box (square, with as much context again), and
the changed pixels alone (the output where it differs from the input, mid-grey elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image

from worker.unclip.images import center_square, edit_repaint_mask

DIFF_TOLERANCE = 12  # per-channel change (0-255) below which a pixel counts as unchanged
NEUTRAL = 128
# The crop's side is this many times the region's (within the image): a region that fills its
# crop edge to edge is framed unlike anything an image checker was calibrated on.
CONTEXT = 2.0


@dataclass(frozen=True)
class EditRegion:
    """The repainted region of one output, as images the checker can score."""

    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in output pixels
    crop: PIL.Image.Image  # the output inside `box`, resized to the checker's input size
    diff: PIL.Image.Image  # changed pixels inside `box` over mid-grey, same size


def square_box(
    x0: int, y0: int, x1: int, y1: int, side: int, context: float = CONTEXT
) -> tuple[int, int, int, int]:
    """A square `context` times the box's longer side, around it and inside the image (square,
    so the checker's centre crop loses nothing)."""
    width = min(side, max(1, int(round(max(x1 - x0, y1 - y0) * context))))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(round(min(max(cx - width / 2, 0), side - width)))
    top = int(round(min(max(cy - width / 2, 0), side - width)))
    return left, top, left + width, top + width


def edit_region(
    input_image: PIL.Image.Image, mask: PIL.Image.Image | None, output: PIL.Image.Image, size: int
) -> EditRegion | None:
    """The repainted region of `output`, or None when the mask repaints nothing."""
    side = output.width
    repaint = edit_repaint_mask(input_image, mask, side)[0].numpy()  # (S, S) bool
    if not repaint.any():
        return None
    ys, xs = np.nonzero(repaint)
    box = square_box(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1, side)
    before = center_square(input_image).convert("RGB")
    if before.size != (side, side):
        before = before.resize((side, side), PIL.Image.Resampling.BICUBIC)
    after = np.asarray(output.convert("RGB"), dtype=np.int16)  # (S, S, 3)
    change = np.abs(after - np.asarray(before, dtype=np.int16)).max(axis=2)  # (S, S)
    changed = (change > DIFF_TOLERANCE) & repaint
    diff = np.where(changed[..., None], after, NEUTRAL).astype(np.uint8)
    resample = PIL.Image.Resampling.BICUBIC
    return EditRegion(
        box=box,
        crop=output.convert("RGB").crop(box).resize((size, size), resample),
        diff=PIL.Image.fromarray(diff).crop(box).resize((size, size), resample),
    )
