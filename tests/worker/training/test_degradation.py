"""Low-res degradations: the blur keeps flat areas, BSR-style output is seeded and in range,
the 64 -> 256 stage's blur is milder than the first upsampler's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.training.degradation import (
    CASCADE_BLUR,
    FIRST_UPSAMPLER_BLUR,
    BlurRanges,
    anisotropic_blur,
    blur_noise_degrade,
    bsr_degrade,
    gaussian_blur,
)


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


def test_blur_ranges_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="blur prob must be in"):
        BlurRanges(prob=1.5, sigma=(0.3, 0.8), noise_std_max=0.0)
    with pytest.raises(ValueError, match="sigma range must be 0 < lo <= hi"):
        BlurRanges(prob=0.5, sigma=(0.8, 0.3), noise_std_max=0.0)
    with pytest.raises(ValueError, match="noise_std_max must be >= 0"):
        BlurRanges(prob=0.5, sigma=(0.3, 0.8), noise_std_max=-0.1)


def test_the_cascade_blur_is_milder_than_the_first_upsamplers() -> None:
    assert CASCADE_BLUR.sigma[1] <= FIRST_UPSAMPLER_BLUR.sigma[1]
    assert CASCADE_BLUR.noise_std_max < FIRST_UPSAMPLER_BLUR.noise_std_max
    x = _edge_image().repeat(16, 1, 1, 1)
    mild = blur_noise_degrade(x, torch.Generator().manual_seed(0), CASCADE_BLUR)
    first = blur_noise_degrade(x, torch.Generator().manual_seed(0))  # FIRST_UPSAMPLER_BLUR
    assert float((mild - x).abs().mean()) < float((first - x).abs().mean())
    assert float(mild.min()) >= -1.0 and float(mild.max()) <= 1.0


def test_blur_with_no_rows_blurred_and_no_noise_keeps_the_image() -> None:
    x = _edge_image()
    none = BlurRanges(prob=0.0, sigma=(0.3, 0.8), noise_std_max=0.0)
    assert torch.equal(blur_noise_degrade(x, torch.Generator().manual_seed(0), none), x)
