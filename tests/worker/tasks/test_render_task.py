"""The stage-task skeleton around a stand-in stage: claim, complete, enqueue, retry, cancel."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import Retry
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.db.claims import Claim, claim_stage
from shared.db.models import Job, StageAttempt
from shared.db.states import Stage
from shared.settings import Settings
from shared.storage.local import LocalStorage
from worker.tasks import base
from worker.tasks.base import RenderTask, Resources, StageOutput
from worker.tasks.progress import ProgressWriter
from worker.unclip.render_spec import StepProgress

Sessions = sessionmaker[Session]


@dataclass
class Script:
    """What the stand-in stage does on each call: an exception to raise, or None to succeed."""

    errors: list[BaseException | None] = field(default_factory=list)
    calls: int = 0
    cancel_job: bool = False


class StandInPrior(RenderTask):
    name = "test.stand_in_prior"
    stage = Stage.prior
    script = Script()

    def render(self, job: Job, claim: Claim, progress: ProgressWriter) -> StageOutput:
        self.script.calls += 1
        error = self.script.errors.pop(0) if self.script.errors else None
        if error is not None:
            raise error
        progress(StepProgress("prior", 1, 2))
        if self.script.cancel_job:
            with self.resources().sessions.begin() as session:
                session.get_one(Job, job.id).status = "cancelled"
        progress(StepProgress("prior", 2, 2))
        return StageOutput(output_key=f"jobs/{job.id}/attempt-{claim.attempt}/prior/e")


@pytest.fixture
def task(
    sqlite_settings: Settings,
    db_sessions: Sessions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[StandInPrior, list[tuple[str, str, int]]]]:
    settings = sqlite_settings.model_copy(update={"max_attempts": 2, "progress_interval_s": 0.0})
    resources = Resources(settings, db_sessions, LocalStorage(tmp_path / "storage"))
    monkeypatch.setattr(RenderTask, "_resources", resources)
    monkeypatch.setattr(RenderTask, "family", classmethod(lambda cls: object()))
    sent: list[tuple[str, str, int]] = []

    def record(app: Any, job_id: str, stage: str, attempt: int) -> str:
        sent.append((job_id, str(stage), attempt))
        return f"{job_id}.{stage}.{attempt}"

    monkeypatch.setattr(base, "enqueue_stage", record)
    monkeypatch.setattr(base, "backoff_s", lambda retries: 0.0)
    app = Celery("test", set_as_current=False)
    app.conf.task_always_eager = True
    instance = app.register_task(StandInPrior())
    StandInPrior.script = Script()
    yield instance, sent


def _state(sessions: Sessions, job_id: str) -> tuple[Job, list[tuple[int, str]]]:
    with sessions() as session:
        job = session.get_one(Job, job_id)
        rows = session.execute(
            select(StageAttempt.attempt, StageAttempt.status)
            .where(StageAttempt.job_id == job_id)
            .order_by(StageAttempt.attempt)
        )
        return job, [(a, s) for a, s in rows]


def test_success_advances_and_enqueues_after_commit(
    task: tuple[StandInPrior, list[Any]], db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    prior, sent = task
    job_id = make_job()
    assert prior.apply(kwargs={"job_id": job_id, "attempt": 0}).get() == "done"
    job, attempts = _state(db_sessions, job_id)
    assert (job.status, job.prior_output_key) == ("decoder", f"jobs/{job_id}/attempt-1/prior/e")
    assert attempts == [(1, "succeeded")]
    assert sent == [(job_id, "decoder", 1)]


def test_duplicate_delivery_does_nothing(
    task: tuple[StandInPrior, list[Any]], db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    prior, sent = task
    job_id = make_job()
    prior.apply(kwargs={"job_id": job_id}).get()
    assert prior.apply(kwargs={"job_id": job_id}).get() == "duplicate"
    assert prior.script.calls == 1
    assert len(sent) == 1
    assert _state(db_sessions, job_id)[1] == [(1, "succeeded")]


def test_transient_error_is_retried_then_succeeds(
    task: tuple[StandInPrior, list[Any]], db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    prior, sent = task
    prior.script.errors = [OperationalError("UPDATE jobs", {}, Exception("connection reset"))]
    job_id = make_job()
    prior.apply(kwargs={"job_id": job_id}).get()  # eager: the retry runs at once
    job, attempts = _state(db_sessions, job_id)
    assert job.status == "decoder"
    assert attempts == [(1, "failed"), (2, "succeeded")]
    assert sent == [(job_id, "decoder", 2)]


def test_transient_errors_stop_at_max_attempts(
    task: tuple[StandInPrior, list[Any]], db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    prior, sent = task
    prior.script.errors = [OperationalError("x", {}, Exception("down"))] * 2
    job_id = make_job()
    result = prior.apply(kwargs={"job_id": job_id})
    job, attempts = _state(db_sessions, job_id)
    assert (job.status, job.error_code) == ("failed", "database_unavailable")
    assert attempts == [(1, "failed"), (2, "failed")]
    assert prior.script.calls == 2 and not sent
    assert result.status in ("SUCCESS", "FAILURE")


def test_bad_input_fails_without_retry(
    task: tuple[StandInPrior, list[Any]], db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    prior, sent = task
    prior.script.errors = [ValueError("mask size (3, 3) must equal the image size (4, 4)")]
    job_id = make_job()
    assert prior.apply(kwargs={"job_id": job_id}).get() == "failed"
    job, attempts = _state(db_sessions, job_id)
    assert (job.status, job.error_code) == ("failed", "invalid_input")
    assert "mask size" in (job.error_message or "")
    assert attempts == [(1, "failed")] and prior.script.calls == 1 and not sent


def test_cancel_stops_within_one_step(
    task: tuple[StandInPrior, list[Any]], db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    prior, sent = task
    prior.script.cancel_job = True
    job_id = make_job()
    assert prior.apply(kwargs={"job_id": job_id}).get() == "cancelled"
    job, attempts = _state(db_sessions, job_id)
    assert job.status == "cancelled" and job.prior_output_key is None
    assert attempts == [(1, "cancelled")] and not sent


def test_stage_held_by_another_worker_is_looked_at_again_later(
    task: tuple[StandInPrior, list[Any]], db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    """A redelivery while another claim looks alive must not be dropped: that worker may
    have died with the message re-queued at once, so the task comes back once it is stale."""
    prior, sent = task
    job_id = make_job()
    with db_sessions.begin() as session:
        other = claim_stage(
            session, job_id=job_id, stage="prior", worker_id="other:1", stale_after_s=60,
            max_attempts=3,
        )  # fmt: skip
    assert other is not None
    with pytest.raises(Retry):
        prior.run(job_id=job_id)
    assert prior.script.calls == 0 and not sent
    assert _state(db_sessions, job_id)[1] == [(1, "running")]
