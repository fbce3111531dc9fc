"""The real stage tasks with moderation: a held output is never published until released, and a
checker that raises holds the job with nothing published."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db import jobs as job_store
from shared.db import verdicts as ledger
from shared.db.models import Job, JobImage, ModerationVerdict
from shared.settings import Settings
from shared.storage.local import LocalStorage
from worker.moderation import image_checker
from worker.tasks import base
from worker.tasks.app import register_tasks
from worker.tasks.base import RenderTask, Resources

ROOT = Path(__file__).resolve().parents[3]
Sessions = sessionmaker[Session]


def _policy_file(tmp_path: Path, image_threshold: float) -> Path:
    """The default policy, with one image concept every output of any CLIP reaches or not."""
    data = yaml.safe_load((ROOT / "policies" / "default.yaml").read_text(encoding="utf-8"))
    data["image"] = {
        "when_uncalibrated": "hold",
        "concepts": [
            {
                "text": "a black star",
                "category": "violence",
                "thresholds": {"default": image_threshold},
            }
        ],
    }
    data["semantic"]["head"] = str(ROOT / "policies" / "default.head.json")
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def run_job(
    sqlite_settings: Settings,
    db_sessions: Sessions,
    tmp_path: Path,
    tiny_family_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[str, float], list[str]]]:
    """run(job_id, image_threshold): the three tasks in process, following each enqueue."""
    storage = LocalStorage(tmp_path / "storage")
    queue: list[tuple[str, str]] = []
    monkeypatch.setattr(
        base, "enqueue_stage", lambda app, job_id, stage, attempt: queue.append((job_id, stage))
    )
    app = register_tasks(Celery("test-moderated", set_as_current=False))

    def run(job_id: str, threshold: float) -> list[str]:
        settings = sqlite_settings.model_copy(
            update={
                "family": tiny_family_dir,
                "device": "cpu",
                "moderation_text_encoder": "clip",
                "moderation_policy": _policy_file(tmp_path, threshold),
            }
        )
        monkeypatch.setattr(RenderTask, "_resources", Resources(settings, db_sessions, storage))
        outcomes = [app.tasks["render.prior"].apply(kwargs={"job_id": job_id}).get()]
        while queue:
            queued_id, stage = queue.pop(0)
            outcomes.append(app.tasks[f"render.{stage}"].apply(kwargs={"job_id": queued_id}).get())
        return outcomes

    yield run


def _published(sessions: Sessions, job_id: str) -> list[JobImage]:
    with sessions() as session:
        return job_store.images_for_job(session=session, job_id=job_id)


def test_held_output_is_not_published_until_released(
    run_job: Any, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job(n=2, prompt="a black star")
    outcomes = run_job(job_id, -1.0)  # every image reaches a threshold of -1: held
    assert outcomes[-1] == "cancelled"  # the upsampler stopped by moderation
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
        stages = [
            v.stage
            for v in session.scalars(
                select(ModerationVerdict).where(ModerationVerdict.job_id == job_id)
            )
        ]
        stored = session.scalars(select(JobImage).where(JobImage.job_id == job_id)).all()
    assert (job.status, job.status_reason) == ("held", "moderation_hold:output_image:violence")
    assert stages == ["prompt", "prompt", "output_image", "output_image"]
    assert len(stored) == 2 and _published(db_sessions, job_id) == []
    with db_sessions.begin() as session:
        outcome = ledger.review_job(
            session=session, job_id=job_id, action="release", reason="a star", reviewer="test"
        )
    assert outcome.published == 2
    assert [i.index for i in _published(db_sessions, job_id)] == [0, 1]


def test_clean_output_is_published(
    run_job: Any, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job(n=1, prompt="a red circle")
    assert run_job(job_id, 1.0) == ["done", "done", "done"]  # cosine never reaches 1: allowed
    assert len(_published(db_sessions, job_id)) == 1


def test_an_image_checker_that_raises_holds_the_job_with_nothing_published(
    run_job: Any,
    db_sessions: Sessions,
    make_job: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: object, images: object) -> object:
        raise RuntimeError("checker exploded")

    monkeypatch.setattr(image_checker.ImageChecker, "similarities", broken)
    job_id = make_job(n=1, prompt="a red circle")
    run_job(job_id, 0.5)
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
        errors = [
            v
            for v in session.scalars(
                select(ModerationVerdict).where(ModerationVerdict.job_id == job_id)
            )
            if v.checker_version == "error"
        ]
    assert (job.status, job.status_reason) == ("held", "moderation_hold:output_image:checker_error")
    assert "checker exploded" in str(errors[0].matched_terms)
    assert _published(db_sessions, job_id) == []
