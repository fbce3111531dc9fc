"""A worker's family: production never falls back to random weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings
from worker.tasks import family_cache
from worker.tasks.family_cache import FamilyUnavailable, get_family

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
