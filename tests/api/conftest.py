"""Fixtures for API tests: a migrated temp SQLite database, local storage and a recording queue."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from shared.db import migrate
from shared.db.states import Stage
from shared.errors import QueueUnavailable
from shared.settings import Settings
from shared.storage.local import LocalStorage


@dataclass
class RecordingQueue:
    """A StageQueue that records each send; `down` makes it act like a dead broker."""

    sent: list[tuple[str, Stage, int]] = field(default_factory=list)
    down: bool = False

    def enqueue(self, job_id: str, stage: Stage, attempt: int) -> str:
        if self.down:
            raise QueueUnavailable("broker down (test)", retry_after_s=7)
        self.sent.append((job_id, stage, attempt))
        return f"{job_id}.{stage}.{attempt}"

    def check(self) -> None:
        if self.down:
            raise QueueUnavailable("broker down (test)", retry_after_s=7)


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "var", public_base_url="http://test.example")
    migrate.upgrade(settings)
    return settings


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def storage(api_settings: Settings) -> LocalStorage:
    return LocalStorage(api_settings.data_dir / "storage")


@pytest.fixture
def client(
    api_settings: Settings, storage: LocalStorage, queue: RecordingQueue
) -> Iterator[TestClient]:
    app = create_app(api_settings, storage=storage, queue=queue)
    with TestClient(app) as test_client:
        yield test_client


def image_bytes(size: tuple[int, int] = (32, 32), mode: str = "RGB", fmt: str = "PNG") -> bytes:
    """A small solid image encoded as `fmt`."""
    colour: tuple[int, ...] | int = {"RGB": (200, 30, 30), "RGBA": (200, 30, 30, 0), "L": 0}.get(
        mode, 0
    )
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format=fmt)
    return buffer.getvalue()
