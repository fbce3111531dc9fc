"""Enforcement per key on PostgreSQL: a hard block cancels the key's queued jobs; three blocks
within the window suspend the key (401 key_suspended) until an admin lifts it; every action is
an append-only moderation_actions row."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import Job, ModerationAction
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue
from .keys_support import ADMIN_TOKEN, bearer, key_id, keyed_settings, new_key

pytestmark = pytest.mark.integration
BLOCKED = ["gas the jews poster", "h\u0435il hitler banner", "l0licon drawing"]


def test_blocks_cancel_queued_jobs_then_suspend_the_key_until_an_admin_lifts_it(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = keyed_settings(tmp_path / "var", database_url=postgres_url, require_api_keys=True)
    name = f"enf-{uuid.uuid4().hex[:8]}"
    secret, bystander = new_key(settings, name), new_key(settings, f"{name}-other")
    me = key_id(settings, name)
    queue = RecordingQueue()
    app = create_app(settings, storage=LocalStorage(tmp_path / "storage"), queue=queue)
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    with TestClient(app) as client:
        queued = client.post("/v1/jobs", json={"prompt": "a red circle"}, headers=bearer(secret))
        theirs = client.post("/v1/jobs", json={"prompt": "a red circle"}, headers=bearer(bystander))
        assert queued.status_code == theirs.status_code == 202
        first = client.post("/v1/jobs", json={"prompt": BLOCKED[0]}, headers=bearer(secret))
        assert first.status_code == 400
        assert first.json()["error"]["code"] == "content_policy_violation"
        job = client.get(f"/v1/jobs/{queued.json()['id']}", headers=bearer(secret)).json()
        assert job["status"] == "cancelled"
        assert job["status_reason"] == "cancelled_by_moderation_block"
        other = client.get(f"/v1/jobs/{theirs.json()['id']}", headers=bearer(bystander)).json()
        assert other["status"] == "queued"  # another key's job is not touched

        for prompt in BLOCKED[1:]:
            assert (
                client.post("/v1/jobs", json={"prompt": prompt}, headers=bearer(secret)).status_code
                == 400
            )
        refused = client.post("/v1/jobs", json={"prompt": "a red circle"}, headers=bearer(secret))
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "key_suspended"
        assert client.get("/v1/jobs", headers=bearer(bystander)).status_code == 200

        admin = bearer(ADMIN_TOKEN)
        state = client.get(f"/v1/admin/moderation/keys/{me}", headers=admin).json()
        assert (
            state["suspended_at"] is not None
            and "3 hard moderation blocks" in (state["suspended_reason"])
        )
        assert [a["action"] for a in state["actions"]] == ["cancel_queued", "suspend_key"]
        # The suspended key may still appeal a refusal (and only that).
        with sessions() as session:
            last_block = session.execute(
                select(Job.id).where(Job.api_key_id == me, Job.status == "rejected")
                .order_by(Job.created_at.desc())
            ).scalars().first()  # fmt: skip
        appeal = client.post(f"/v1/jobs/{last_block}/appeal", headers=bearer(secret),
                             json={"reason": "these were history lessons"})  # fmt: skip
        assert appeal.status_code == 201, appeal.text
        assert (
            client.post(
                f"/v1/admin/moderation/keys/{me}/unsuspend",
                headers=bearer(secret),
                json={"reason": "self-service"},
            ).status_code
            == 401
        )  # suspended
        lifted = client.post(
            f"/v1/admin/moderation/keys/{me}/unsuspend",
            headers=admin,
            json={"reason": "reviewed: a test", "reviewer": "ann"},
        )
        assert lifted.status_code == 200 and lifted.json()["suspended_at"] is None
        assert (
            client.post(
                "/v1/jobs", json={"prompt": "a red circle"}, headers=bearer(secret)
            ).status_code
            == 202
        )
        again = client.post(
            f"/v1/admin/moderation/keys/{me}/unsuspend", headers=admin, json={"reason": "twice"}
        )
        assert again.status_code == 409
        # Blocks from before the suspension was lifted do not count again: one more block
        # refuses that prompt (and cancels the queued job) but does not suspend the key.
        fourth = client.post("/v1/jobs", json={"prompt": BLOCKED[0]}, headers=bearer(secret))
        assert fourth.json()["error"]["code"] == "content_policy_violation"
        after = client.post("/v1/jobs", json={"prompt": "a red circle"}, headers=bearer(secret))
        assert after.status_code == 202, after.text
    with sessions() as session:
        actions = session.execute(
            select(ModerationAction)
            .where(ModerationAction.api_key_id == me)
            .order_by(ModerationAction.created_at)
        ).scalars()
        rows = list(actions)
        assert [(a.action, a.actor) for a in rows] == [
            ("cancel_queued", "moderation"),
            ("suspend_key", "moderation"),
            ("unsuspend_key", "ann"),
            ("cancel_queued", "moderation"),
        ]
        assert rows[0].detail["cancelled"] == [queued.json()["id"]]
        rejected = session.execute(
            select(Job.status).where(Job.api_key_id == me, Job.status == "rejected")
        )
        assert len(list(rejected)) == 4
    engine.dispose()
