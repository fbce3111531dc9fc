"""Settings: embedded defaults, environment names, and start-up checks refusing bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import Settings, get_settings


def test_embedded_defaults_live_under_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'unclip.db'}"
    assert settings.storage_url == (tmp_path / "storage").as_uri()
    assert settings.broker_url == "filesystem://"
    assert settings.limits.max_n == 10 and "64x64" in settings.limits.sizes


def test_environment_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UNCLIP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("UNCLIP_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("UNCLIP_BROKER_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("UNCLIP_STORAGE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("UNCLIP_FAMILY", "/models/karlo")
    monkeypatch.setenv("UNCLIP_LIMITS__MAX_N", "4")
    get_settings.cache_clear()
    try:
        settings = get_settings()
        assert get_settings() is settings  # read once
    finally:
        get_settings.cache_clear()
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.broker_url.startswith("redis://")
    assert settings.storage_url == "s3://bucket/prefix"
    assert settings.family == Path("/models/karlo") and settings.limits.max_n == 4


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"storage_url": "ftp://x/y"}, "file:///absolute/path or s3://bucket/prefix"),
        ({"storage_url": "s3:///prefix"}, "names no bucket"),
        ({"broker_url": "amqp://x"}, "'amqp://x'"),
        ({"visibility_timeout_s": 1000}, "at least twice task_time_limit_s=660"),
        ({"task_soft_time_limit_s": 700}, "must be below task_time_limit_s=660"),
        ({"device": "tpu"}, "device"),
        ({"dtype": "int8"}, "dtype"),
        ({"limits": {"max_n": 11}}, "max_n"),
        ({"limits": {"sizes": ["64x64", "100x100"]}}, "100x100"),
        ({"limits": {"prior_guidance": {"min": 5, "max": 1}}}, "min <= max"),
    ],
)
def test_bad_values_are_refused_naming_them(
    tmp_path: Path, overrides: dict[str, object], says: str
) -> None:
    with pytest.raises(ValidationError, match=says.replace("(", r"\(")):
        Settings(data_dir=tmp_path, **overrides)  # type: ignore[arg-type]


def test_production_refuses_placeholders(tmp_path: Path) -> None:
    pg = "postgresql+psycopg://u@h/db"
    with pytest.raises(ValidationError, match="admin_token"):
        Settings(data_dir=tmp_path, env="production", database_url=pg)
    with pytest.raises(ValidationError, match="SQLite"):
        Settings(data_dir=tmp_path, env="production", admin_token="x" * 32)
    with pytest.raises(ValidationError, match="api_key_secret"):
        Settings(data_dir=tmp_path, env="production", database_url=pg, admin_token="x" * 32)
    ok = Settings(
        data_dir=tmp_path, env="production", database_url=pg, admin_token="x" * 32,
        api_key_secret="k" * 32,
        public_base_url="https://images.example", url_signing_secret="u" * 32,
    )  # fmt: skip
    assert ok.require_api_keys
    assert ok.admin_token.get_secret_value() == "x" * 32
    assert "x" * 32 not in repr(ok)
