"""The stage-task skeleton around a stand-in stage: claim, complete, hand off, retry, cancel,
drain and health."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from shared.db.claims import Claim, claim_stage, count_stage_attempts
from shared.db.models import Job, OutboxMessage, StageAttempt
from shared.db.states import Stage
from shared.errors import StorageError
from shared.settings import Settings
from shared.storage.local import LocalStorage
from worker.tasks import base, drain
from worker.tasks.base import RenderTask, Resources, StageOutput
from worker.tasks.health import STORAGE_FAILURES_UNHEALTHY, WorkerUnhealthy, health
from worker.tasks.outbox_marks import PublishedMarks
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

    def record(app: Any, job_id: str, stage: str, attempt: int, **options: Any) -> str:
        if Broker.down:
            raise ConnectionError("broker down")
        sent.append((job_id, str(stage), attempt))
        return f"{job_id}.{stage}.{attempt}"

    monkeypatch.setattr(base, "enqueue_stage", record)
    monkeypatch.setattr(base, "backoff_s", lambda retries: 0.0)
    monkeypatch.setattr(base, "health", health)
    Broker.down = False
    health.reason = None
    health.storage_failed_jobs.clear()
    app = Celery("test", set_as_current=False)
    app.conf.task_always_eager = True
    instance = app.register_task(StandInPrior())
    StandInPrior.script = Script()
    yield instance, sent
    health.reason = None
    health.storage_failed_jobs.clear()
    monkeypatch.setattr(drain, "_deadline", None)


class Broker:
    down = False


def _state(sessions: Sessions, job_id: str) -> tuple[Job, list[tuple[int, str]]]:
    with sessions() as session:
        job = session.get_one(Job, job_id)
        rows = session.execute(
            select(StageAttempt.attempt, StageAttempt.status)
            .where(StageAttempt.job_id == job_id)
            .order_by(StageAttempt.attempt)
        )
        return job, [(a, s) for a, s in rows]


def _outbox(sessions: Sessions, job_id: str) -> list[tuple[str, str, bool]]:
    """(stage, reason, published) of the job's outbox messages, oldest first."""
    with sessions() as session:
        rows = session.execute(
            select(OutboxMessage.stage, OutboxMessage.reason, OutboxMessage.published_at)
            .where(OutboxMessage.job_id == job_id)
            .order_by(OutboxMessage.created_at)
        )
        return [(s, r, p is not None) for s, r, p in rows]


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
    prior.resources().marks.flush(db_sessions)  # the next transaction or the timer marks it
    assert _outbox(db_sessions, job_id) == [("decoder", "next_stage", True)]


def test_a_published_message_is_marked_in_the_next_claim(
    task: tuple[StandInPrior, list[Any]],
    db_sessions: Sessions,
    make_job: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prior, sent = task
    res = prior.resources()
    slow = Resources(res.settings, res.sessions, res.storage, marks=PublishedMarks(60.0))
    monkeypatch.setattr(RenderTask, "_resources", slow)
    first, second = make_job(), make_job()
    assert prior.apply(kwargs={"job_id": first, "attempt": 0}).get() == "done"
    assert _outbox(db_sessions, first) == [("decoder", "next_stage", False)]
    assert slow.marks.pending() == 1
    assert prior.apply(kwargs={"job_id": second, "attempt": 0}).get() == "done"
    assert _outbox(db_sessions, first) == [("decoder", "next_stage", True)]
    assert _outbox(db_sessions, second) == [("decoder", "next_stage", False)]
    assert [s for _, s, _ in sent] == ["decoder", "decoder"]


def test_publish_failure_after_commit_leaves_the_message_in_the_outbox(
    task: tuple[StandInPrior, list[Any]], db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    prior, sent = task
    Broker.down = True
    job_id = make_job()
    assert prior.apply(kwargs={"job_id": job_id}).get() == "done"
    job, attempts = _state(db_sessions, job_id)
    assert job.status == "decoder" and attempts == [(1, "succeeded")] and not sent
    assert _outbox(db_sessions, job_id) == [("decoder", "next_stage", False)]


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
    assert prior.apply(kwargs={"job_id": job_id}).get() == "retrying"
    assert sent == [(job_id, "prior", 1)]  # the retry's message, from the outbox
    assert _outbox(db_sessions, job_id) == [("prior", "retry", True)]
    assert prior.apply(kwargs={"job_id": job_id}).get() == "done"
    job, attempts = _state(db_sessions, job_id)
    assert job.status == "decoder"
    assert attempts == [(1, "failed"), (2, "succeeded")]
    assert sent[-1] == (job_id, "decoder", 2)


def test_retry_budget_is_the_databases_not_celerys(
    task: tuple[StandInPrior, list[Any]], db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    """A message that already went through many Celery retries (a database outage) still
    gets max_attempts real attempts."""
    prior, sent = task
    prior.script.errors = [OperationalError("x", {}, Exception("down"))]
    job_id = make_job()
    assert prior.apply(kwargs={"job_id": job_id}, retries=50).get() == "retrying"
    assert prior.apply(kwargs={"job_id": job_id}, retries=51).get() == "done"
    assert _state(db_sessions, job_id)[1] == [(1, "failed"), (2, "succeeded")]


def test_transient_errors_stop_at_max_attempts(
    task: tuple[StandInPrior, list[Any]], db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    prior, sent = task
    prior.script.errors = [OperationalError("x", {}, Exception("down"))] * 2
    job_id = make_job()
    assert prior.apply(kwargs={"job_id": job_id}).get() == "retrying"
    assert prior.apply(kwargs={"job_id": job_id}).get() == "failed"
    job, attempts = _state(db_sessions, job_id)
    assert (job.status, job.error_code) == ("failed", "database_unavailable")
    assert attempts == [(1, "failed"), (2, "failed")]
    assert prior.script.calls == 2 and sent == [(job_id, "prior", 1)]


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


def test_stage_held_by_a_live_worker_is_acknowledged_as_a_duplicate(
    task: tuple[StandInPrior, list[Any]], db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    """A live holder keeps the stage; if it dies, its worker or the sweeper releases it."""
    prior, sent = task
    job_id = make_job()
    with db_sessions.begin() as session:
        other = claim_stage(
            session, job_id=job_id, stage="prior", worker_id="other:1", stale_after_s=60,
            max_attempts=3,
        )  # fmt: skip
    assert other is not None
    assert prior.apply(kwargs={"job_id": job_id}).get() == "duplicate"
    assert prior.script.calls == 0 and not sent
    assert _state(db_sessions, job_id)[1] == [(1, "running")]


def test_drain_past_its_timeout_hands_the_job_back_uncounted(
    task: tuple[StandInPrior, list[Any]],
    db_sessions: Sessions,
    make_job: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prior, sent = task
    monkeypatch.setattr(drain, "_state_dir", None)
    monkeypatch.setattr(drain, "_deadline", None)
    original = StandInPrior.render

    def render_then_drain(self: StandInPrior, job: Job, claim: Claim, progress: Any) -> Any:
        drain.begin(0.0)  # SIGTERM arrives while the stage runs; the timeout is already over
        return original(self, job, claim, progress)

    monkeypatch.setattr(StandInPrior, "render", render_then_drain)
    job_id = make_job()
    assert prior.apply(kwargs={"job_id": job_id}).get() == "handed_back"
    job, attempts = _state(db_sessions, job_id)
    assert (job.status, job.worker_id, job.prior_output_key) == ("prior", None, None)
    assert attempts == [(1, "released")]
    with db_sessions() as session:
        assert count_stage_attempts(session, job_id=job_id, stage="prior") == 0
    assert sent == [(job_id, "prior", 1)]  # the message is back in the queue
    # While draining, a new delivery is handed back before it claims anything.
    assert prior.apply(kwargs={"job_id": job_id}).get() == "handed_back"
    assert _state(db_sessions, job_id)[1] == [(1, "released")] and len(sent) == 2


def test_broken_family_hands_the_job_back_and_reports_unhealthy(
    task: tuple[StandInPrior, list[Any]],
    db_sessions: Sessions,
    make_job: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prior, sent = task

    def broken(cls: type) -> object:
        raise RuntimeError("family.json: unknown format 'nope'")

    monkeypatch.setattr(RenderTask, "family", classmethod(broken))
    job_id = make_job()
    for _ in range(2):
        with pytest.raises(WorkerUnhealthy, match="unknown format"):
            prior.apply(kwargs={"job_id": job_id}, throw=True)
    job, attempts = _state(db_sessions, job_id)
    assert (job.status, job.error_code, attempts) == ("queued", None, [])
    assert sent == [(job_id, "prior", 0)] * 2 and prior.script.calls == 0


def test_storage_failing_on_every_job_makes_the_worker_unhealthy(
    task: tuple[StandInPrior, list[Any]], db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    prior, sent = task
    jobs = [make_job(seed=k) for k in range(STORAGE_FAILURES_UNHEALTHY)]
    prior.script.errors = [StorageError("bucket unreachable")] * len(jobs)
    outcomes = [prior.apply(kwargs={"job_id": j}).get() for j in jobs[:-1]]
    assert outcomes == ["retrying"] * (len(jobs) - 1)
    with pytest.raises(WorkerUnhealthy, match="storage failed on 3 jobs in a row"):
        prior.apply(kwargs={"job_id": jobs[-1]}, throw=True)
    job, attempts = _state(db_sessions, jobs[-1])
    assert (job.status, job.worker_id, attempts) == ("prior", None, [(1, "released")])
    assert sent[-1] == (jobs[-1], "prior", 1)


def test_one_job_failing_storage_on_every_attempt_does_not_make_the_worker_unhealthy(
    task: tuple[StandInPrior, list[Any]], db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    """A poison job is that job's problem: it fails after max_attempts, the worker stays fit."""
    prior, sent = task
    job_id = make_job()
    tries = prior.resources().settings.max_attempts
    prior.script.errors = [StorageError("attempt folder unwritable")] * tries
    outcomes = [prior.apply(kwargs={"job_id": job_id, "attempt": a}).get() for a in range(tries)]
    assert outcomes == ["retrying"] * (tries - 1) + ["failed"]
    job, attempts = _state(db_sessions, job_id)
    assert job.status == "failed" and [s for _, s in attempts] == ["failed"] * tries
    assert health.healthy
