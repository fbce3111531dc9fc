"""`unclip keys create|list|revoke`: the secret is the last line, once; the API honours it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from shared.storage.local import LocalStorage

from ..conftest import RecordingQueue
from ..keys_support import KEY_SECRET, bearer, keyed_settings


def _unclip(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UNCLIP_DATA_DIR": str(data_dir), "UNCLIP_API_KEY_SECRET": KEY_SECRET}
    env.pop("UNCLIP_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", "keys", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_create_prints_the_secret_last_and_once_then_list_and_revoke(tmp_path: Path) -> None:
    settings = keyed_settings(tmp_path / "var")
    made = _unclip(
        settings.data_dir, "create", "--name", "ci", "--rpm", "5", "--max-active-jobs", "2",
        "--admin",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("sk-unclip-") and made.stdout.count(secret) == 1
    app = create_app(
        settings, storage=LocalStorage(settings.data_dir / "storage"), queue=RecordingQueue()
    )
    with TestClient(app) as client:
        assert client.get("/v1/admin/keys", headers=bearer(secret)).status_code == 200
        listed = _unclip(settings.data_dir, "list")
        assert listed.returncode == 0 and secret not in listed.stdout
        [row] = [line.split() for line in listed.stdout.splitlines() if line.startswith("ci ")]
        assert row[2:] == ["yes", "5", "2", "active"]
        revoked = _unclip(settings.data_dir, "revoke", "ci")
        assert revoked.returncode == 0, revoked.stderr
        assert _unclip(settings.data_dir, "list").stdout.split()[-1] == "revoked"
        answer = client.get("/v1/jobs", headers=bearer(secret))
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"


def test_a_taken_name_or_an_unknown_key_fails_with_a_message(tmp_path: Path) -> None:
    settings = keyed_settings(tmp_path / "var")
    assert _unclip(settings.data_dir, "create", "--name", "dup").returncode == 0
    again = _unclip(settings.data_dir, "create", "--name", "dup")
    assert again.returncode == 1 and "'dup' already exists" in again.stderr
    gone = _unclip(settings.data_dir, "revoke", "nobody")
    assert gone.returncode == 1 and "no API key named 'nobody'" in gone.stderr
    bad = _unclip(settings.data_dir, "create", "--name", "x", "--rpm", "0")
    assert bad.returncode == 2 and "at least 1" in bad.stderr
    huge = _unclip(settings.data_dir, "create", "--name", "y", "--rpm", str(2**40))
    assert huge.returncode == 2 and "at most 2147483647" in huge.stderr
