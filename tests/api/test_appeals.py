"""Appeals: the owning key appeals a held or rejected job once; an admin lists and decides it;
upholding releases the job and publishes its held images; the job shows the appeal's state."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from shared.db import verdicts as ledger
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import Job, JobImage, ModerationReview
from shared.moderation.verdict import Decision, Verdict
from shared.settings import Settings
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue, image_bytes
from .keys_support import ADMIN_TOKEN, bearer, key_id, keyed_settings, new_key

ADMIN = bearer(ADMIN_TOKEN)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return keyed_settings(tmp_path / "var", require_api_keys=True)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def client(settings: Settings, storage: LocalStorage) -> Iterator[TestClient]:
    with TestClient(create_app(settings, storage=storage, queue=RecordingQueue())) as client:
        yield client


def _moderated_job(
    settings: Settings, storage: LocalStorage, owner: str, *, status: str, images: int
) -> str:
    """A job the worker's output-image check held or rejected, its PNGs stored unpublished."""
    verdict = Verdict(
        stage="output_image",
        checker="image",
        checker_version="image/2",
        policy_version="test",
        decision=Decision.HOLD,
        scores={"a concept": 0.9},
        thresholds={"a concept": 0.5},
        flagged=("violence",),
        matched_terms={"violence": ("a concept",)},
    )
    engine = make_engine(settings)
    try:
        with make_sessionmaker(engine).begin() as session:
            job = Job(
                kind="generate",
                prompt="a red circle",
                n=max(images, 1),
                size="64x64",
                seed=1,
                sampler="ddim",
                steps_prior=1,
                steps_decoder=1,
                steps_upsampler=1,
                prior_guidance=1.0,
                decoder_guidance=1.0,
                status=status,
                attempt=1,
                api_key_id=owner,
                status_reason="moderation_hold:output_image:violence",
            )
            session.add(job)
            session.flush()
            for index in range(images):
                key = f"images/{job.id}/{index}.png"
                storage.put_bytes(key, image_bytes((64, 64)), "image/png")
                session.add(
                    JobImage(
                        job_id=job.id,
                        index=index,
                        attempt=1,
                        storage_key=key,
                        width=64,
                        height=64,
                        published=False,
                    )
                )
            ledger.record_verdict(session=session, job_id=job.id, verdict=verdict)
            return job.id
    finally:
        engine.dispose()


def test_owner_appeals_once_and_an_upheld_appeal_publishes_the_images(
    client: TestClient, settings: Settings, storage: LocalStorage
) -> None:
    mine, other = new_key(settings, "owner"), new_key(settings, "stranger")
    job_id = _moderated_job(settings, storage, key_id(settings, "owner"), status="held", images=2)
    assert client.get(f"/v1/jobs/{job_id}/images/0", headers=bearer(mine)).status_code == 404

    reason = {"reason": "it is a red circle, nothing else"}
    assert (
        client.post(f"/v1/jobs/{job_id}/appeal", json=reason, headers=bearer(other)).status_code
        == 404
    )  # not the owner's job
    filed = client.post(f"/v1/jobs/{job_id}/appeal", json=reason, headers=bearer(mine))
    assert filed.status_code == 201, filed.text
    appeal = filed.json()
    assert appeal["status"] == "open" and appeal["job_id"] == job_id
    again = client.post(f"/v1/jobs/{job_id}/appeal", json=reason, headers=bearer(mine))
    assert again.status_code == 409 and "one appeal per job" in again.json()["error"]["message"]

    job = client.get(f"/v1/jobs/{job_id}", headers=bearer(mine)).json()
    assert job["appeal"]["status"] == "open" and job["appeal"]["id"] == appeal["id"]
    assert job["moderation"] == {
        "decision": "hold",
        "stage": "output_image",
        "category": "violence",
        "reason_code": "moderation_hold:output_image:violence",
    }
    assert "a concept" not in str(job)  # matched concepts and thresholds stay admin-only

    assert client.get("/v1/admin/moderation/appeals", headers=bearer(mine)).status_code in (
        401,
        403,
    )
    listed = client.get("/v1/admin/moderation/appeals", headers=ADMIN).json()["data"]
    assert [a["id"] for a in listed] == [appeal["id"]] and listed[0]["job"]["id"] == job_id

    decided = client.post(
        f"/v1/admin/moderation/appeals/{appeal['id']}/decide",
        headers=ADMIN,
        json={"decision": "uphold", "reason": "shapes only", "reviewer": "ann"},
    )
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert body["status"] == "upheld" and body["published_images"] == 2
    assert body["job"]["status"] == "succeeded"
    job = client.get(f"/v1/jobs/{job_id}", headers=bearer(mine)).json()
    assert job["appeal"]["status"] == "upheld" and len(job["images"]) == 2
    fetched = client.get(f"/v1/jobs/{job_id}/images/1", headers=bearer(mine))
    assert fetched.status_code == 200 and fetched.content == image_bytes((64, 64))
    assert client.get("/v1/admin/moderation/appeals", headers=ADMIN).json()["data"] == []
    engine = make_engine(settings)
    with make_sessionmaker(engine)() as session:
        [review] = session.execute(select(ModerationReview)).scalars().all()
        assert review.action == "release" and review.reviewer == "ann"
        assert review.reason.startswith(f"appeal {appeal['id']} uphold")
    engine.dispose()
    twice = client.post(
        f"/v1/admin/moderation/appeals/{appeal['id']}/decide",
        headers=ADMIN,
        json={"decision": "deny", "reason": "changed my mind"},
    )
    assert twice.status_code == 409


def test_a_denied_appeal_confirms_and_only_moderated_jobs_can_be_appealed(
    client: TestClient, settings: Settings, storage: LocalStorage
) -> None:
    name = f"k-{uuid.uuid4().hex[:6]}"
    mine = new_key(settings, name)
    owner_id = key_id(settings, name)
    held = _moderated_job(settings, storage, owner_id, status="held", images=0)
    done = _moderated_job(settings, storage, owner_id, status="succeeded", images=1)
    refused = client.post(f"/v1/jobs/{done}/appeal", json={"reason": "x"}, headers=bearer(mine))
    assert refused.status_code == 409 and "held or rejected" in refused.json()["error"]["message"]
    appeal = client.post(
        f"/v1/jobs/{held}/appeal", json={"reason": "please"}, headers=bearer(mine)
    ).json()
    decided = client.post(
        f"/v1/admin/moderation/appeals/{appeal['id']}/decide",
        headers=ADMIN,
        json={"decision": "deny", "reason": "the hold stands"},
    ).json()
    assert decided["status"] == "denied" and decided["job"]["status"] == "rejected"
    assert decided["published_images"] == 0 and decided["job"]["images"] == []
    job = client.get(f"/v1/jobs/{held}", headers=bearer(mine)).json()
    assert job["appeal"]["status"] == "denied" and job["appeal"]["decided_at"]


def test_an_upheld_appeal_of_a_rejected_job_publishes_its_images(
    client: TestClient, settings: Settings, storage: LocalStorage
) -> None:
    name = f"k-{uuid.uuid4().hex[:6]}"
    mine = new_key(settings, name)
    rejected = _moderated_job(settings, storage, key_id(settings, name), status="rejected",
                              images=1)  # fmt: skip
    appeal = client.post(
        f"/v1/jobs/{rejected}/appeal", json={"reason": "it is a shape"}, headers=bearer(mine)
    ).json()
    decided = client.post(
        f"/v1/admin/moderation/appeals/{appeal['id']}/decide",
        headers=ADMIN,
        json={"decision": "uphold", "reason": "a harmless shape"},
    ).json()
    assert decided["status"] == "upheld" and decided["job"]["status"] == "succeeded"
    assert decided["published_images"] == 1
    job = client.get(f"/v1/jobs/{rejected}", headers=bearer(mine)).json()
    assert [image["index"] for image in job["images"]] == [0]
