"""bf16 renders of the shipped shapes family against its float32 renders, image by image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from worker.unclip.family import Family, load_family
from worker.unclip.render import render
from worker.unclip.render_spec import RenderSpec

SHAPES = Path(__file__).resolve().parents[3] / "models" / "shapes"
PROMPTS = ("a large red circle in the centre", "a small blue square top left on a white background")
# Measured on the shipped family: bf16 against fp32 gave a mean absolute difference of 0.3-1.7
# levels (of 255) and a PSNR of 31-50 dB per image; another seed's fp32 image is far off.
MAX_MEAN_ABS = 4.0
MIN_PSNR_DB = 25.0


def _pixels(family: Family, seed: int) -> list[np.ndarray]:
    d = family.defaults
    specs = [
        RenderSpec(
            kind="generate",
            prompt=p,
            n=1,
            seed=seed + i,
            steps=d.steps,
            sampler=d.sampler,
            prior_guidance=d.prior_guidance,
            decoder_guidance=d.decoder_guidance,
        )  # fmt: skip
        for i, p in enumerate(PROMPTS)
    ]
    return [np.asarray(images[0], dtype=np.float64) for images in render(family, specs)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * float(np.log10(255.0**2 / mse))


@pytest.mark.skipif(not (SHAPES / "family.json").is_file(), reason="no shipped shapes family")
def test_bf16_images_match_the_float32_ones_within_tolerance() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fp32 = _pixels(load_family(SHAPES), seed=0)
        bf16 = _pixels(load_family(SHAPES, dtype=torch.bfloat16), seed=0)
        other_seed = _pixels(load_family(SHAPES), seed=50)
    finally:
        torch.set_num_threads(before)
    for a, b, far in zip(fp32, bf16, other_seed, strict=True):
        assert a.shape == b.shape == (64, 64, 3)
        mean_abs = float(np.abs(a - b).mean())
        assert mean_abs <= MAX_MEAN_ABS and _psnr(a, b) >= MIN_PSNR_DB, (mean_abs, _psnr(a, b))
        # The tolerance means something: another seed's image is well outside it.
        assert float(np.abs(a - far).mean()) > 2 * MAX_MEAN_ABS and _psnr(a, far) < MIN_PSNR_DB
