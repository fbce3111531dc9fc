"""Admin moderation endpoints: token-protected; list held/rejected jobs; release and confirm."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from shared.db import migrate
from shared.db import verdicts as ledger
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import Job, JobImage
from shared.moderation.verdict import Decision, Verdict
from shared.settings import Settings
from shared.storage.local import LocalStorage

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def admin_settings(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "var", admin_token=TOKEN,
                        public_base_url="http://test.example")
    migrate.upgrade(settings)
    return settings


@pytest.fixture
def admin_client(admin_settings: Settings, queue: object) -> Iterator[TestClient]:
    storage = LocalStorage(admin_settings.data_dir / "storage")
    app = create_app(admin_settings, storage=storage, queue=queue)  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield client


def _held_job(settings: Settings, *, with_images: bool) -> str:
    """A job the output check held: its PNG is stored but not published."""
    engine = make_engine(settings)
    storage = LocalStorage(settings.data_dir / "storage")
    verdict = Verdict(stage="output_image", checker="image", checker_version="image/1",
                      policy_version="p1", decision=Decision.HOLD, scores={"a black star": 0.4},
                      thresholds={"a black star": 0.3}, flagged=("violence",))
    with make_sessionmaker(engine).begin() as session:
        job = Job(kind="generate", prompt="a black star", n=1, size="64x64", seed=1,
                  sampler="ddim", steps_prior=1, steps_decoder=1, steps_upsampler=1,
                  prior_guidance=1.0, decoder_guidance=1.0, status="held", attempt=1,
                  status_reason=verdict.reason_code)  # fmt: skip
        session.add(job)
        session.flush()
        if with_images:
            key = f"jobs/{job.id}/a1/image-0.png"
            storage.put_bytes(key, b"\x89PNG\r\n\x1a\nfake", "image/png")
            session.add(JobImage(job_id=job.id, index=0, attempt=1, storage_key=key, width=64,
                                 height=64, published=False))
        ledger.record_verdict(session=session, job_id=job.id, verdict=verdict)
        job_id = job.id
    engine.dispose()
    return job_id


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), ({"Authorization": "Basic x"}, 401)],
)
def test_admin_endpoints_need_the_admin_token(
    admin_client: TestClient, headers: dict[str, str], status: int
) -> None:
    answer = admin_client.get("/v1/admin/moderation/jobs", headers=headers)
    assert answer.status_code == status
    assert "admin" in answer.json()["error"]["message"]


def test_review_flow_release_publishes_the_held_images(
    admin_client: TestClient, admin_settings: Settings
) -> None:
    job_id = _held_job(admin_settings, with_images=True)
    assert admin_client.get(f"/v1/jobs/{job_id}/images/0").status_code == 404
    listed = admin_client.get("/v1/admin/moderation/jobs?status=held", headers=AUTH).json()
    [entry] = listed["data"]
    assert entry["job"]["id"] == job_id and entry["job"]["images"] == []
    [verdict] = entry["verdicts"]
    assert verdict["decision"] == "hold" and verdict["scores"] == {"a black star": 0.4}
    released = admin_client.post(f"/v1/admin/moderation/jobs/{job_id}/release", headers=AUTH,
                                 json={"reason": "a star, not violence", "reviewer": "carol"})
    assert released.status_code == 200, released.text
    body = released.json()
    assert body["published_images"] == 1 and body["job"]["status"] == "succeeded"
    assert body["reviews"][0]["reason"] == "a star, not violence"
    image = admin_client.get(f"/v1/jobs/{job_id}/images/0")
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    job = admin_client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and len(job["images"]) == 1


def test_release_before_rendering_sends_the_job_back_to_the_prior_queue(
    admin_client: TestClient, admin_settings: Settings, queue: object
) -> None:
    job_id = _held_job(admin_settings, with_images=False)
    answer = admin_client.post(f"/v1/admin/moderation/jobs/{job_id}/release", headers=AUTH,
                               json={"reason": "fine"})
    assert answer.json()["requeued"] is True and answer.json()["job"]["status"] == "queued"
    assert [(j, str(s)) for j, s, _ in queue.sent] == [(job_id, "prior")]  # type: ignore[attr-defined]


def test_confirm_rejects_and_a_rejected_job_cannot_be_released(
    admin_client: TestClient, admin_settings: Settings
) -> None:
    job_id = _held_job(admin_settings, with_images=True)
    confirmed = admin_client.post(f"/v1/admin/moderation/jobs/{job_id}/confirm", headers=AUTH,
                                  json={"reason": "confirmed violent"})
    assert confirmed.json()["job"]["status"] == "rejected"
    # The owner still sees which stage and category refused it, now as a block.
    moderation = admin_client.get(f"/v1/jobs/{job_id}").json()["moderation"]
    assert moderation is not None and moderation["decision"] == "block"
    assert (moderation["stage"], moderation["category"]) == ("output_image", "violence")
    again = admin_client.post(f"/v1/admin/moderation/jobs/{job_id}/release", headers=AUTH,
                              json={"reason": "changed my mind"})
    assert again.status_code == 409
    assert "only held jobs can be released" in again.json()["error"]["message"]
    assert admin_client.get(f"/v1/jobs/{job_id}/images/0").status_code == 404
    empty = admin_client.post(f"/v1/admin/moderation/jobs/{job_id}/confirm", headers=AUTH,
                              json={"reason": ""})
    assert empty.status_code == 400


def test_unknown_status_filter_is_refused(admin_client: TestClient) -> None:
    answer = admin_client.get("/v1/admin/moderation/jobs?status=queued", headers=AUTH)
    assert answer.status_code == 400
    assert "['queued']" in answer.json()["error"]["message"]
