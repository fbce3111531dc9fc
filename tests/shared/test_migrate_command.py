"""`unclip migrate` applies the migrations to the configured database, and can take them back."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.cli import main
from shared.db import migrate
from shared.settings import Settings, get_settings


def test_unclip_migrate_up_and_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("UNCLIP_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # the packaged migrations are found from any directory
    get_settings.cache_clear()
    try:
        assert main(["migrate"]) == 0
        head = migrate.head_revision()
        assert head != "0001_initial"  # the moderation ledger migration follows the initial one
        assert migrate.current_revision(Settings(data_dir=tmp_path)) == head
        assert f"None -> {head}" in capsys.readouterr().out
        assert main(["migrate", "--downgrade"]) == 0
        assert migrate.current_revision(Settings(data_dir=tmp_path)) is None
    finally:
        get_settings.cache_clear()
