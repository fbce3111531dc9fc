"""family.json read as plain JSON: the shipped family's defaults and native size, and fallbacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import ConfigurationError
from shared.family_info import family_info, read_family_info

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "shapes"


@pytest.mark.skipif(not (SHIPPED / "family.json").is_file(), reason="no shipped family")
def test_shipped_family_makes_64_and_256px_with_guidance_4_and_5() -> None:
    info = read_family_info(SHIPPED)
    assert info.name == "shapes-tiny" and info.native_sizes == ("64x64", "256x256")
    assert info.native_size_for(None) == "256x256" and info.native_size_for("64x64") == "64x64"
    assert (info.defaults.prior_guidance, info.defaults.decoder_guidance) == (4.0, 5.0)
    assert info.defaults.steps.model_dump() == {"prior": 10, "decoder": 10, "upsampler": 4}


@pytest.mark.skipif(not (SHIPPED / "family.json").is_file(), reason="no shipped family")
def test_it_agrees_with_the_worker_loader() -> None:
    from worker.tasks.job_spec import sampling_defaults
    from worker.unclip.family import load_family

    assert sampling_defaults(load_family(SHIPPED)) == read_family_info(SHIPPED).defaults


def test_native_size_falls_back_to_the_upsampler_and_defaults_to_the_worker_ones(
    tmp_path: Path,
) -> None:
    from worker.tasks.job_spec import sampling_defaults
    from worker.unclip.family import FamilyDefaults

    (tmp_path / "family.json").write_text(json.dumps({"format": "unclip-family/1"}))
    (tmp_path / "upsampler.json").write_text(json.dumps({"image_size": 256}))
    info = read_family_info(tmp_path)
    assert info.native_size == "256x256" and info.name == tmp_path.name

    class Bare:  # what the worker fills with when family.json names no defaults
        defaults = FamilyDefaults()

    assert info.defaults == sampling_defaults(Bare())  # type: ignore[arg-type]


def test_bad_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "family.json").write_text(json.dumps({"native_size": "big"}))
    with pytest.raises(ConfigurationError, match="native_size 'big'"):
        read_family_info(tmp_path)
    (tmp_path / "family.json").write_text(json.dumps({"defaults": {"sampler": "euler"}}))
    (tmp_path / "upsampler.json").write_text(json.dumps({"image_size": 64}))
    with pytest.raises(ConfigurationError, match="bad defaults"):
        read_family_info(tmp_path)
    assert family_info(tmp_path / "nowhere") is None


def test_native_sizes_pick_the_size_a_request_runs_at(tmp_path: Path) -> None:
    meta = {"native_size": "256x256", "native_sizes": ["256x256", "64x64"]}
    (tmp_path / "family.json").write_text(json.dumps(meta))
    info = read_family_info(tmp_path)
    assert info.native_sizes == ("64x64", "256x256") and info.native_size == "256x256"
    picks = {s: info.native_size_for(s) for s in (None, "64x64", "128x128", "256x256",
                                                   "512x512", "1024x1024")}
    assert picks == {None: "256x256", "64x64": "64x64", "128x128": "256x256",
                     "256x256": "256x256", "512x512": "256x256", "1024x1024": "256x256"}
    (tmp_path / "family.json").write_text(json.dumps({"native_size": "64x64"}))  # one size
    assert read_family_info(tmp_path).native_size_for("1024x1024") == "64x64"
    (tmp_path / "family.json").write_text(json.dumps({"native_sizes": []}))
    with pytest.raises(ConfigurationError, match="native_sizes must be a non-empty list"):
        read_family_info(tmp_path)
