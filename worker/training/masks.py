"""Random inpainting masks for decoder training: nothing known, or a rectangle or an ellipse."""

from __future__ import annotations

import torch
from torch import Tensor

NOTHING_KNOWN_FRACTION = 0.5  # rows that are plain text-to-image generation (keep = 0 everywhere)
REGION_SIDE = (0.2, 0.75)  # side of the repainted region, as a fraction of the image side


def random_keep_masks(batch: int, size: int, gen: torch.Generator) -> Tensor:
    """keep (B, 1, size, size) in {0, 1}: 1 where the pixel is given, 0 where to paint.

    Half the rows know nothing (keep = 0 everywhere); the others keep everything but one
    random axis-aligned rectangle or ellipse, like the masks users draw for edits.
    """
    dev = gen.device
    u = torch.rand(batch, 7, generator=gen, device=dev)  # (B, 7) uniform draws per row
    nothing = u[:, 0] < NOTHING_KNOWN_FRACTION
    ellipse = u[:, 1] < 0.5
    lo, hi = REGION_SIDE
    w = lo + (hi - lo) * u[:, 2]
    h = lo + (hi - lo) * u[:, 3]
    cx = w / 2 + (1 - w) * u[:, 4]
    cy = h / 2 + (1 - h) * u[:, 5]
    coords = (torch.arange(size, device=dev, dtype=torch.float32) + 0.5) / size  # (S,)
    dx = (coords[None, None, :] - cx[:, None, None]) / (w[:, None, None] / 2)  # (B, 1, S)
    dy = (coords[None, :, None] - cy[:, None, None]) / (h[:, None, None] / 2)  # (B, S, 1)
    in_rect = (dx.abs() <= 1) & (dy.abs() <= 1)  # (B, S, S)
    in_ellipse = dx**2 + dy**2 <= 1
    paint = torch.where(ellipse[:, None, None], in_ellipse, in_rect) | nothing[:, None, None]
    return (~paint).float()[:, None]  # (B, 1, S, S)
