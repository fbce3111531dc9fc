"""Respacing: which timesteps are kept, and that the respaced process matches the original."""

import numpy as np
import pytest

from worker.unclip.diffusion.gaussian_diffusion import make_diffusion
from worker.unclip.diffusion.respace import (
    SPACING_KINDS,
    respace,
    respaced,
    space_timesteps,
    spacing_spec,
)


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


# Outputs of kakaobrain/karlo's space_timesteps (karlo/modules/diffusion/respace.py at
# 3c68a50), run by hand from a local checkout: Karlo's code is not a test dependency.
KARLO = {
    (1000, "21"): [
        0,
        50,
        100,
        150,
        200,
        250,
        300,
        350,
        400,
        450,
        499,
        549,
        599,
        649,
        699,
        749,
        799,
        849,
        899,
        949,
        999,
    ],
    (1000, "fast27"): [
        0,
        22,
        44,
        66,
        88,
        111,
        133,
        155,
        177,
        199,
        200,
        222,
        244,
        266,
        288,
        311,
        333,
        355,
        377,
        399,
        400,
        500,
        599,
        600,
        799,
        800,
        997,
    ],
    (1000, "ddim27"): list(range(0, 1000, 38)),
    (1000, "ddim3"): [0, 334, 668],
    (999, "25"): [
        0,
        42,
        83,
        125,
        166,
        208,
        250,
        291,
        333,
        374,
        416,
        457,
        499,
        541,
        582,
        624,
        665,
        707,
        749,
        790,
        832,
        873,
        915,
        956,
        998,
    ],
}


@pytest.mark.parametrize(("num_timesteps", "spec"), list(KARLO))
def test_karlo_spacings_give_karlos_steps(num_timesteps: int, spec: str) -> None:
    assert space_timesteps(num_timesteps, spec) == KARLO[num_timesteps, spec]


def test_ddim_without_an_exact_stride_names_the_alternatives() -> None:
    with pytest.raises(ValueError, match="ddim600.*leading600"):
        space_timesteps(1000, "ddim600")


def test_leading_spacing_strides_from_zero_and_never_visits_the_last_step() -> None:
    assert space_timesteps(1000, "leading27") == list(range(0, 37 * 27, 37))
    assert space_timesteps(1000, "leading10") == space_timesteps(1000, "ddim10")


@pytest.mark.parametrize("spec", [10, "trailing10", "leading10", "ddim10", "fast27", "6,4"])
def test_start_caps_the_largest_step_and_keeps_the_form(spec: int | str) -> None:
    capped = space_timesteps(1000, spec, start=997)
    assert max(capped) <= 997 and len(capped) == len(space_timesteps(1000, spec))
    assert capped == space_timesteps(998, spec)  # the spacing of a 998-step diffusion
    if spec in (10, "trailing10", "6,4"):
        assert capped[-1] == 997  # spacings that end at the last step now end at start
    with pytest.raises(ValueError, match=r"start must be in 0\.\.999, got 1000"):
        space_timesteps(1000, spec, start=1000)


def test_spacing_kinds_name_their_specs() -> None:
    specs = {kind: spacing_spec(kind, 27) for kind in SPACING_KINDS}
    assert specs == {
        "linspace": 27,
        "leading": "leading27",
        "trailing": "trailing27",
        "ddim": "ddim27",
        "fast27": "fast27",
    }
    with pytest.raises(ValueError, match="'fast27' takes exactly 27 steps, got 10"):
        spacing_spec("fast27", 10)
    with pytest.raises(ValueError, match="unknown spacing 'cosine'; allowed: linspace"):
        spacing_spec("cosine", 10)


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
