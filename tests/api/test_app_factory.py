"""create_app wires settings, storage, queue and the admin routes, and checks the policy."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from shared.moderation.policy import PolicyError
from shared.settings import Settings
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue


def test_a_bad_moderation_policy_stops_the_app_at_start_up(
    tmp_path: Path, api_settings: Settings, storage: LocalStorage
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\ncategories: not-a-mapping\n")
    settings = api_settings.model_copy(update={"moderation_policy": policy})
    with pytest.raises(PolicyError, match="unclip-policy/1"):
        create_app(settings, storage=storage, queue=RecordingQueue())


def test_admin_routes_are_mounted(api_settings: Settings, storage: LocalStorage) -> None:
    app = create_app(api_settings, storage=storage, queue=RecordingQueue())
    with TestClient(app) as client:
        # Mounted and guarded: no bearer token, no listing.
        assert client.get("/v1/admin/moderation/jobs").status_code == 401


def test_default_parts_come_from_settings(api_settings: Settings) -> None:
    app = create_app(api_settings)
    assert isinstance(app.state.storage, LocalStorage)
    assert app.state.storage.root == api_settings.data_dir / "storage"
    with TestClient(app) as client:
        response = client.post("/v1/jobs", json={"prompt": "a red circle"})
        assert response.status_code == 202
        # The embedded filesystem broker now holds the render.prior message.
        assert len(list((api_settings.broker_dir / "queue").glob("*.msg"))) == 1
        assert client.get("/readyz").status_code == 200
