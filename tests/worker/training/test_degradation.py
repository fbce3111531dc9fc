"""Low-res degradations: the blur keeps flat areas, BSR-style output is seeded and in range."""

from __future__ import annotations

import numpy as np
import torch

from worker.training.degradation import anisotropic_blur, bsr_degrade, gaussian_blur


def _edge_image() -> torch.Tensor:
    x = -torch.ones(2, 3, 32, 32)
    x[:, :, 8:24, 8:24] = 1.0
    return x


def test_blur_keeps_flat_regions_and_softens_edges() -> None:
    x = _edge_image()
    y = gaussian_blur(x, torch.tensor([0.8, 0.8]))
    assert torch.allclose(y[:, :, 0, 0], x[:, :, 0, 0]) and torch.allclose(
        y[:, :, 16, 16], x[:, :, 16, 16]
    )
    assert -1.0 < float(y[0, 0, 16, 8]) < 1.0  # the edge pixel is now in between


def test_an_anisotropic_kernel_blurs_one_axis_more() -> None:
    x = _edge_image()
    one = torch.ones(2)
    y = anisotropic_blur(x, one * 1.5, one * 0.3, torch.zeros(2), radius=3)
    across_x = float((y[0, 0, 16, 4:12] - x[0, 0, 16, 4:12]).abs().sum())
    across_y = float((y[0, 0, 4:12, 16] - x[0, 0, 4:12, 16]).abs().sum())
    assert across_x > 3 * across_y


def test_bsr_degradation_is_seeded_in_range_and_changes_the_image() -> None:
    x = _edge_image()
    a = bsr_degrade(x, np.random.default_rng(3))
    b = bsr_degrade(x, np.random.default_rng(3))
    assert torch.equal(a, b) and a.shape == x.shape
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    changed = [not torch.equal(bsr_degrade(x, np.random.default_rng(s)), x) for s in range(8)]
    assert sum(changed) >= 6
