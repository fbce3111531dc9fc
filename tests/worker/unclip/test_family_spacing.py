"""family.json's defaults.spacing and defaults.solver_start choose each stage's timesteps."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from shared.family_info import read_family_info
from worker.unclip.diffusion import diffusion_from_config, respaced
from worker.unclip.family import Family, FamilyDefaults, FamilyError, load_family, save_family
from worker.unclip.reference_family import make_reference_family


@pytest.fixture(scope="module")
def family() -> Family:
    return make_reference_family(0)


def _with(family: Family, **defaults: object) -> Family:
    chosen = dataclasses.replace(family.defaults, **defaults)  # type: ignore[arg-type]
    return dataclasses.replace(family, defaults=chosen, _respaced={})


def test_unset_keys_keep_todays_spacing(family: Family) -> None:
    """ddpm: Karlo's evenly spread steps; ddim and dpmpp_2m: trailing steps from T - 1."""
    full = diffusion_from_config(family.decoder_config.diffusion)
    assert family.diffusion("decoder", 10, "ddpm").timestep_map == respaced(full, 10).timestep_map
    for sampler in ("ddim", "dpmpp_2m"):
        kept = family.diffusion("decoder", 10, sampler).timestep_map
        assert kept == respaced(full, "trailing10").timestep_map and kept[-1] == 999
    assert "spacing" not in family.defaults.to_dict()  # a family.json without them is unchanged
    assert "solver_start" not in family.defaults.to_dict()


def test_spacing_and_solver_start_per_sampler_and_stage(family: Family) -> None:
    chosen = _with(family, spacing={"ddim": "leading"}, solver_start={"decoder": 997})
    assert chosen.diffusion("prior", 10, "ddim").timestep_map == tuple(range(0, 1000, 100))
    # leading over the first 998 timesteps: stride 99
    assert chosen.diffusion("decoder", 10, "ddim").timestep_map == tuple(range(0, 990, 99))
    trailing = chosen.diffusion("decoder", 10, "dpmpp_2m").timestep_map
    assert trailing[-1] == 997 and len(trailing) == 10  # the solvers start at 997 on the decoder
    assert chosen.diffusion("decoder", 10, "ddpm").timestep_map[-1] == 999  # ddpm keeps T - 1
    assert chosen.diffusion("upsampler", 4, "dpmpp_2m").timestep_map[-1] == 999


def test_fast27_needs_27_steps(family: Family) -> None:
    chosen = _with(family, spacing={"ddim": "fast27"})
    assert chosen.diffusion("prior", 27, "ddim").timestep_map[-1] == 997
    with pytest.raises(ValueError, match="'fast27' takes exactly 27 steps, got 10"):
        chosen.diffusion("prior", 10, "ddim")


def test_family_json_round_trip_and_the_api_ignores_the_keys(
    family: Family, tmp_path: Path
) -> None:
    chosen = _with(family, spacing={"ddpm": "trailing"}, solver_start={"upsampler": 995})
    save_family(chosen, tmp_path)
    meta = json.loads((tmp_path / "family.json").read_text())
    assert meta["defaults"]["spacing"] == {"ddpm": "trailing"}
    assert meta["defaults"]["solver_start"] == {"upsampler": 995}
    loaded = load_family(tmp_path)
    assert loaded.defaults == chosen.defaults
    assert loaded.diffusion("upsampler", 4, "ddim").timestep_map[-1] == 995
    assert read_family_info(tmp_path).defaults.sampler == chosen.defaults.sampler


@pytest.mark.parametrize(
    ("defaults", "message"),
    [
        (
            {"spacing": {"euler": "trailing"}},
            "defaults.spacing: unknown key 'euler'; allowed: ddpm",
        ),
        ({"spacing": {"ddim": "cosine"}}, "defaults.spacing.ddim: 'cosine' is unknown; allowed"),
        ({"spacing": ["ddim"]}, "defaults.spacing must be an object"),
        ({"solver_start": {"clip": 3}}, "defaults.solver_start: unknown key 'clip'"),
        ({"solver_start": {"decoder": -1}}, "defaults.solver_start.decoder must be an int >= 0"),
    ],
)
def test_bad_values_are_named(defaults: dict[str, object], message: str) -> None:
    with pytest.raises(FamilyError, match=message):
        FamilyDefaults.from_dict(defaults)


def test_a_start_past_the_schedule_is_named(family: Family) -> None:
    chosen = _with(family, solver_start={"prior": 1000})
    with pytest.raises(ValueError, match=r"start must be in 0\.\.999, got 1000"):
        chosen.diffusion("prior", 10, "ddim")


SHIPPED = Path(__file__).parents[3] / "models/shapes"


def test_the_shipped_family_writes_out_todays_spacing(family: Family) -> None:
    """models/shapes names its spacing and solver start; its timesteps are the built-in ones."""
    meta = json.loads((SHIPPED / "family.json").read_text())["defaults"]
    assert set(meta["spacing"]) == {"ddpm", "ddim", "dpmpp_2m"}
    assert set(meta["solver_start"]) == {"prior", "decoder", "upsampler"}
    shipped = _with(family, **FamilyDefaults.from_dict(meta).__dict__)
    implicit = _with(family, spacing={}, solver_start={})
    for stage, steps in (("prior", 10), ("decoder", 7), ("upsampler", 4)):
        for sampler in ("ddpm", "ddim", "dpmpp_2m"):
            kept = shipped.diffusion(stage, steps, sampler).timestep_map
            assert kept == implicit.diffusion(stage, steps, sampler).timestep_map


def test_unknown_family_json_keys_are_named_with_the_allowed_ones() -> None:
    with pytest.raises(
        FamilyError, match=r"unknown keys \['spacings'\]; allowed: .*'solver_start'"
    ):
        FamilyDefaults.from_dict({"spacings": {}})
