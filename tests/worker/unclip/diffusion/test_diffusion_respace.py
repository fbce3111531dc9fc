"""Respacing: which timesteps are kept, and that the respaced process matches the original."""

import numpy as np
import pytest

from worker.unclip.diffusion.gaussian_diffusion import make_diffusion
from worker.unclip.diffusion.respace import respace, respaced, space_timesteps


def test_section_counts_include_both_ends() -> None:
    kept = space_timesteps(1000, 10)
    assert kept[0] == 0 and kept[-1] == 999 and len(kept) == 10
    assert space_timesteps(1000, "10") == kept
    assert space_timesteps(100, "10,5") == [0, 5, 11, 16, 22, 27, 33, 38, 44, 49] + [
        50,
        62,
        74,
        87,
        99,
    ]


def test_ddim_and_trailing_spacing() -> None:
    assert space_timesteps(1000, "ddim10") == list(range(0, 1000, 100))
    assert space_timesteps(1000, "trailing10") == list(range(99, 1000, 100))
    assert space_timesteps(1000, "trailing1") == [999]


@pytest.mark.parametrize("spec", ["fast", "ddimx", "0", "2000", "trailing0", ""])
def test_bad_spec_names_it_and_the_forms(spec: str) -> None:
    with pytest.raises(ValueError, match=repr(spec).replace("'", "")[:3] or "''"):
        space_timesteps(1000, spec)


def test_respaced_process_keeps_alphas_cumprod_and_maps_timesteps() -> None:
    base = make_diffusion(
        schedule="cosine", timesteps=1000, prediction="eps", variance="fixed_small"
    )
    kept = space_timesteps(1000, "trailing25")
    small = respace(base, kept)
    assert small.num_timesteps == 25
    assert small.timestep_map == tuple(kept)
    np.testing.assert_allclose(small.alphas_cumprod, base.alphas_cumprod[kept], rtol=1e-7)
    # Respacing a respaced diffusion maps back to the original timesteps.
    smaller = respace(small, [0, 12, 24])
    assert smaller.timestep_map == (kept[0], kept[12], kept[24])
    np.testing.assert_allclose(
        smaller.alphas_cumprod, base.alphas_cumprod[list(smaller.timestep_map)], rtol=1e-7
    )
    assert respaced(base, "ddim5").timestep_map == (0, 200, 400, 600, 800)


def test_respace_rejects_out_of_range_steps() -> None:
    base = make_diffusion(schedule="cosine", timesteps=10, prediction="x0", variance="fixed_large")
    with pytest.raises(ValueError, match=r"0\.\.9"):
        respace(base, [3, 10])
