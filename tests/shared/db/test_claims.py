"""Worker-side claims: one owner per stage, stale claims taken over, writes only by the owner."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.claims import (
    TOO_MANY_ATTEMPTS,
    ImageRecord,
    claim_stage,
    close_cancelled,
    complete_stage,
    fail_stage,
    heartbeat,
    record_progress,
)
from shared.db.models import Job, JobImage, StageAttempt

Sessions = sessionmaker[Session]


def _claim(sessions: Sessions, job_id: str, stage: str, worker: str = "w1", **kw: object):
    options: dict[str, object] = {"stale_after_s": 60.0, "max_attempts": 3, **kw}
    with sessions.begin() as session:
        return claim_stage(session, job_id=job_id, stage=stage, worker_id=worker, **options)


def _job(sessions: Sessions, job_id: str) -> Job:
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def _attempts(sessions: Sessions, job_id: str) -> list[tuple[str, int, str]]:
    with sessions() as session:
        rows = session.execute(
            select(StageAttempt.stage, StageAttempt.attempt, StageAttempt.status)
            .where(StageAttempt.job_id == job_id)
            .order_by(StageAttempt.started_at, StageAttempt.attempt)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_second_claim_of_a_running_stage_is_a_no_op(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    first = _claim(db_sessions, job_id, "prior")
    assert first is not None and first.attempt == 1
    assert _claim(db_sessions, job_id, "prior", worker="w2") is None
    job = _job(db_sessions, job_id)
    assert (job.status, job.worker_id, job.attempt) == ("prior", "w1", 1)
    assert job.started_at is not None
    assert _attempts(db_sessions, job_id) == [("prior", 1, "running")]


def test_stage_order_is_enforced(db_sessions: Sessions, make_job: Callable[..., str]) -> None:
    job_id = make_job()
    assert _claim(db_sessions, job_id, "decoder") is None
    claim = _claim(db_sessions, job_id, "prior")
    assert claim is not None
    with db_sessions.begin() as session:
        assert complete_stage(session, claim, output_key="jobs/x/attempt-1/prior/e")
    # A duplicate of the prior message after the prior finished changes nothing.
    assert _claim(db_sessions, job_id, "prior") is None
    job = _job(db_sessions, job_id)
    assert (job.status, job.prior_output_key, job.worker_id) == (
        "decoder",
        "jobs/x/attempt-1/prior/e",
        None,
    )
    decoder = _claim(db_sessions, job_id, "decoder")
    assert decoder is not None and decoder.attempt == 2


def test_stale_claim_is_taken_over_and_marked_lost(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    old = _claim(db_sessions, job_id, "prior", now=utcnow() - timedelta(seconds=600))
    assert old is not None
    new = _claim(db_sessions, job_id, "prior", worker="w2")
    assert new is not None and new.attempt == old.attempt + 1
    assert _attempts(db_sessions, job_id) == [("prior", 1, "lost"), ("prior", 2, "running")]
    # The old owner's writes no longer land.
    with db_sessions.begin() as session:
        assert not heartbeat(session, old)
        assert not record_progress(session, old, step=1, total=2, progress=0.2)
        assert not complete_stage(session, old, output_key="k")
        assert record_progress(session, new, step=1, total=2, progress=0.2)
    job = _job(db_sessions, job_id)
    assert (job.worker_id, job.progress_step, job.progress_total) == ("w2", 1, 2)


def test_upsampler_completion_records_images_and_succeeds(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job(status="upsampler", n=2)
    claim = _claim(db_sessions, job_id, "upsampler")
    assert claim is not None
    images = [ImageRecord(i, f"jobs/{job_id}/attempt-1/images/{i}.png", 64, 64) for i in (0, 1)]
    with db_sessions.begin() as session:
        assert complete_stage(session, claim, images=images)
    job = _job(db_sessions, job_id)
    assert (job.status, job.progress) == ("succeeded", 1.0)
    assert job.finished_at is not None
    with db_sessions() as session:
        rows = session.scalars(select(JobImage).where(JobImage.job_id == job_id)).all()
    assert sorted((r.index, r.attempt, r.published) for r in rows) == [(0, 1, True), (1, 1, True)]


def test_transient_failure_releases_then_attempts_run_out(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    for attempt in (1, 2):
        claim = _claim(db_sessions, job_id, "prior", max_attempts=2)
        assert claim is not None and claim.attempt == attempt
        with db_sessions.begin() as session:
            fail_stage(session, claim, error_code="database_unavailable", error_message="x",
                       retry=True)  # fmt: skip
        assert _job(db_sessions, job_id).status == "prior"
    # A third delivery finds the stage tried max_attempts times: the job fails for good.
    assert _claim(db_sessions, job_id, "prior", max_attempts=2) is None
    job = _job(db_sessions, job_id)
    assert (job.status, job.error_code) == ("failed", TOO_MANY_ATTEMPTS)
    assert [s for _, _, s in _attempts(db_sessions, job_id)] == ["failed", "failed"]


def test_permanent_failure_fails_the_job(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    claim = _claim(db_sessions, job_id, "prior")
    assert claim is not None
    with db_sessions.begin() as session:
        assert fail_stage(session, claim, error_code="invalid_input", error_message="bad mask",
                          retry=False)  # fmt: skip
    job = _job(db_sessions, job_id)
    assert (job.status, job.error_code, job.error_message) == (
        "failed",
        "invalid_input",
        "bad mask",
    )
    assert _claim(db_sessions, job_id, "prior") is None


def test_cancel_stops_the_owner(db_sessions: Sessions, make_job: Callable[..., str]) -> None:
    job_id = make_job()
    claim = _claim(db_sessions, job_id, "prior")
    assert claim is not None
    with db_sessions.begin() as session:
        session.get_one(Job, job_id).status = "cancelled"
    with db_sessions.begin() as session:
        assert not record_progress(session, claim, step=1, total=2, progress=0.1)
        assert not complete_stage(session, claim, output_key="k")
        close_cancelled(session, claim)
    assert _attempts(db_sessions, job_id) == [("prior", 1, "cancelled")]
    assert _job(db_sessions, job_id).status == "cancelled"


def test_a_claim_carries_the_webhook_so_its_events_read_no_job_row(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    from sqlalchemy import event

    from shared.db.models.webhook_delivery import WebhookDelivery

    job_id = make_job(webhook_url="https://example.com/hook", webhook_events="started,completed")
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = db_sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", seen)
    try:
        claim = _claim(db_sessions, job_id, "prior")
        assert claim is not None and claim.delivery is not None
        assert claim.delivery.url == "https://example.com/hook"
        with db_sessions.begin() as session:
            assert record_progress(session, claim, step=1, total=2, progress=0.1)
            assert complete_stage(session, claim, output_key="k")
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "FROM jobs" in s]
    assert reads == []  # the claim's UPDATE ... RETURNING brought the webhook along
    with db_sessions() as session:
        kinds = session.scalars(
            select(WebhookDelivery.event).where(WebhookDelivery.job_id == job_id)
        ).all()
    assert sorted(kinds) == ["started"]  # progress and stage_done are not subscribed here


def test_a_released_claim_shows_the_stage_waiting_at_its_start(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    from shared.db.claims import release_claim

    job_id = make_job()
    prior = _claim(db_sessions, job_id, "prior")
    assert prior is not None
    with db_sessions.begin() as session:
        assert complete_stage(session, prior, output_key="jobs/x/attempt-1/prior/e")
    claim = _claim(db_sessions, job_id, "decoder")
    assert claim is not None
    with db_sessions.begin() as session:
        assert record_progress(session, claim, step=230, total=250, progress=0.64)
    with db_sessions.begin() as session:
        assert release_claim(session, claim, status="released")
    job = _job(db_sessions, job_id)
    assert (job.status, job.worker_id) == ("decoder", None)
    assert (job.progress_step, job.progress_total) == (0, None)
    assert job.progress == 1 / 3  # the decoder's start, not step 230 of the dropped attempt
