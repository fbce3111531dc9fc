"""Family directories: save/load round trip, dtypes, and errors naming what is missing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from worker.unclip.family import REQUIRED_FILES, Family, FamilyError, load_family, save_family
from worker.unclip.reference_family import make_reference_family


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def family() -> Family:
    return make_reference_family(3)


def _states(family: Family) -> dict[str, dict[str, torch.Tensor]]:
    return {name: net.state_dict() for name, net in family.networks().items()}


def _assert_same_weights(a: Family, b: Family, dtype: torch.dtype) -> None:
    sa, sb = _states(a), _states(b)
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name].keys() == sb[name].keys(), name
        for key, value in sa[name].items():
            other = sb[name][key]
            assert other.dtype == (dtype if value.is_floating_point() else value.dtype), key
            assert torch.equal(value.to(other.dtype), other), f"{name}.{key} differs"


def test_round_trip_is_exact(family: Family, tmp_path: Path) -> None:
    save_family(family, tmp_path, dtype=torch.float32)
    loaded = load_family(tmp_path)
    _assert_same_weights(family, loaded, torch.float32)
    assert torch.equal(loaded.prior_mean, family.prior_mean)
    assert torch.equal(loaded.prior_std, family.prior_std)
    assert loaded.defaults == family.defaults and loaded.name == family.name
    assert loaded.clip_config == family.clip_config
    assert loaded.prior_config == family.prior_config
    assert loaded.decoder_config == family.decoder_config
    assert loaded.upsampler_config == family.upsampler_config
    # A second save of the loaded family writes the same bytes.
    again = save_family(loaded, tmp_path / "again", dtype=torch.float32)
    for name in REQUIRED_FILES:
        assert (again / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_half_precision_weights_load_exactly(family: Family, tmp_path: Path) -> None:
    save_family(family, tmp_path)  # float16 by default
    loaded = load_family(tmp_path, dtype=torch.float16)
    assert loaded.dtype == torch.float16 and loaded.clip.dtype == torch.float16
    _assert_same_weights(family, loaded, torch.float16)
    assert loaded.prior_mean.dtype == torch.float32  # stats stay float32


def test_load_onto_bfloat16(family: Family, tmp_path: Path) -> None:
    save_family(family, tmp_path)
    loaded = load_family(tmp_path, device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.decoder.parameters()} == {torch.bfloat16}
    assert loaded.device == torch.device("cpu")


def test_family_json_format(family: Family, tmp_path: Path) -> None:
    save_family(family, tmp_path)
    meta = json.loads((tmp_path / "family.json").read_text())
    assert meta["format"] == "unclip-family/1"
    assert meta["defaults"]["steps"] == [10, 10, 4]
    assert meta["defaults"]["sampler"] == "ddim"
    assert json.loads((tmp_path / "clip.json").read_text())["open_clip_config"] is not None


def test_missing_directory_and_files_are_named(family: Family, tmp_path: Path) -> None:
    with pytest.raises(FamilyError, match="not found: .*nowhere"):
        load_family(tmp_path / "nowhere")
    save_family(family, tmp_path)
    (tmp_path / "decoder.safetensors").unlink()
    (tmp_path / "prior_stats.safetensors").unlink()
    with pytest.raises(FamilyError, match="missing prior_stats.safetensors, decoder.safetensors"):
        load_family(tmp_path)


def test_malformed_files_are_named(family: Family, tmp_path: Path) -> None:
    save_family(family, tmp_path)
    (tmp_path / "family.json").write_text('{"format": "other/9"}')
    with pytest.raises(FamilyError, match="format must be 'unclip-family/1', got 'other/9'"):
        load_family(tmp_path)
    save_family(family, tmp_path)
    config = json.loads((tmp_path / "decoder.json").read_text())
    config["model_channels"] = 64
    (tmp_path / "decoder.json").write_text(json.dumps(config))
    with pytest.raises(FamilyError, match="decoder.safetensors does not fit its config"):
        load_family(tmp_path)


def test_bad_dtype_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="float32, bfloat16 or float16, got torch.int8"):
        load_family(tmp_path, dtype=torch.int8)
