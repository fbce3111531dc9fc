"""A worker's family: production never falls back to random weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shared.settings import Settings
from worker.tasks import family_cache
from worker.tasks.family_cache import FamilyUnavailable, get_family, resolve_dtype

PRODUCTION = {"env": "production", "database_url": "postgresql+psycopg://u@h/db",
              "admin_token": "a" * 32, "api_key_secret": "k" * 32, "url_signing_secret": "u" * 32,
              "public_base_url": "https://images.example"}  # fmt: skip


def test_production_refuses_a_missing_family(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, family=tmp_path / "none", device="cpu", **PRODUCTION)
    with pytest.raises(FamilyUnavailable, match="never falls back to random weights"):
        get_family(settings)


def test_development_falls_back_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(family_cache, "_cache", {})
    settings = Settings(data_dir=tmp_path, family=tmp_path / "none", device="cpu")
    family = get_family(settings)
    assert family.name and "random-weight" in caplog.text


def test_bf16_on_a_cpu_follows_its_native_support(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(family_cache, "cpu_supports_bf16", lambda: True)
    assert resolve_dtype(cpu, "bfloat16") == torch.bfloat16
    assert resolve_dtype(cpu, "float32") == torch.float32
    monkeypatch.setattr(family_cache, "cpu_supports_bf16", lambda: False)
    with pytest.raises(FamilyUnavailable, match="UNCLIP_DTYPE=bfloat16 on a CPU worker: this CPU"):
        resolve_dtype(cpu, "bfloat16")
    with pytest.raises(FamilyUnavailable, match="float16 is GPU-only"):
        resolve_dtype(cpu, "float16")
    assert resolve_dtype(torch.device("cuda"), "float16") == torch.float16


def test_the_family_carries_the_reproducible_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(family_cache, "_cache", {})

    def settings(reproducible: bool) -> Settings:
        return Settings(data_dir=tmp_path, family=tmp_path / "none", device="cpu",
                        reproducible=reproducible)  # fmt: skip

    fast, exact = get_family(settings(False)), get_family(settings(True))
    assert (fast.reproducible, exact.reproducible) == (False, True)
    assert get_family(settings(True)) is exact
