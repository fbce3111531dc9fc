"""The API's lexical gate: a prompt with a decisive term answers 400 content_policy_violation,
sends nothing, stores no input, and leaves a rejected job with its verdict for the reviewers;
an ambiguous term goes on to the worker's semantic stage."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from shared.db import migrate
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import Job, ModerationVerdict
from shared.settings import Settings
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue, image_bytes


@pytest.mark.parametrize(
    ("prompt", "category"),
    [("g a s the jews poster", "hate"), ("l0licon art", "sexual/minors"),
     ("h\u0435il hitler banner", "hate"), ("h1tler was right poster", "hate")],
)
def test_blocked_prompt_gets_400_and_nothing_is_enqueued(
    client: TestClient, queue: RecordingQueue, api_settings: Settings, prompt: str,
    category: str,
) -> None:
    answer = client.post("/v1/jobs", json={"prompt": prompt})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "content_policy_violation"
    assert error["type"] == "invalid_request_error" and error["param"] == "prompt"
    assert category in error["message"] and "stage prompt" in error["message"]
    assert "hitler" not in error["message"] and "loli" not in error["message"]  # no terms
    assert queue.sent == []
    engine = make_engine(api_settings)
    with make_sessionmaker(engine)() as session:
        [job] = session.execute(select(Job)).scalars().all()
        assert job.status == "rejected"
        assert job.status_reason == f"moderation_block:prompt:{category}"
        [verdict] = session.execute(select(ModerationVerdict)).scalars().all()
        assert verdict.job_id == job.id and verdict.checker == "lexical"
        assert verdict.decision == "block" and verdict.scores[category] == 1.0
    engine.dispose()


def test_blocked_edit_stores_no_input(
    client: TestClient, queue: RecordingQueue, storage: LocalStorage
) -> None:
    png = base64.b64encode(image_bytes((32, 32))).decode()
    answer = client.post("/v1/jobs", json={"kind": "edit", "prompt": "make her a lolicon",
                                           "image": png, "mask": png})
    assert answer.status_code == 400
    assert queue.sent == []
    assert not [p for p in storage.root.rglob("*") if p.is_file()]


@pytest.mark.parametrize("prompt", ["a shot of espresso", "kill the lights in the kitchen",
                                    "a killer whale breaching",
                                    # ambiguous terms: judged in context by the worker
                                    "a nude Venus statue in a museum", "a gory horror poster"])
def test_lookalike_prompts_are_accepted_and_enqueued(
    client: TestClient, queue: RecordingQueue, prompt: str
) -> None:
    answer = client.post("/v1/jobs", json={"prompt": prompt})
    assert answer.status_code == 202, answer.text
    assert len(queue.sent) == 1


@pytest.mark.integration
def test_blocked_prompt_leaves_the_redis_queue_length_unchanged(
    tmp_path: Path, redis_url: str
) -> None:
    import redis

    settings = Settings(data_dir=tmp_path / "var", broker_url=redis_url)
    migrate.upgrade(settings)
    app = create_app(settings, storage=LocalStorage(tmp_path / "storage"))
    broker = redis.Redis.from_url(redis_url)
    with TestClient(app) as client:
        before = broker.llen("prior")
        assert client.post("/v1/jobs", json={"prompt": "l0li art"}).status_code == 400
        assert broker.llen("prior") == before
        assert client.post("/v1/jobs", json={"prompt": "a red circle"}).status_code == 202
        assert broker.llen("prior") == before + 1
    broker.close()
