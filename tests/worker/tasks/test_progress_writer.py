"""Progress: written at most once per interval (the last step with the completion), cancel
noticed within the cancel-check interval."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.claims import Claim, claim_stage
from shared.db.models import Job
from shared.db.models.job_event import JobEvent
from shared.db.states import overall_progress
from worker.tasks.progress import (
    ClaimLost,
    JobCancelled,
    ProgressWriter,
    one_transaction,
)
from worker.unclip.render_spec import StepProgress

Sessions = sessionmaker[Session]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _claimed(sessions: Sessions, job_id: str, stage: str = "prior") -> Claim:
    with sessions.begin() as session:
        claim = claim_stage(
            session, job_id=job_id, stage=stage, worker_id="w", stale_after_s=60, max_attempts=3
        )
    assert claim is not None
    return claim


def test_overall_progress_spans_the_three_stages() -> None:
    assert overall_progress("prior", 0, 10) == 0.0
    assert overall_progress("decoder", 5, 10) == pytest.approx(0.5)
    assert overall_progress("upsampler", 4, 4) == 1.0


def test_writes_are_bounded_by_the_interval(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job(status="decoder")
    clock = FakeClock()
    writer = ProgressWriter(
        db_sessions, _claimed(db_sessions, job_id, "decoder"), interval_s=1.0, clock=clock
    )
    # 20 steps in 2.5 s of fake time: writes at t=1.0 and 2.0, the last step left to finish()
    for step in range(1, 21):
        writer(StepProgress("decoder", step, 20))
        clock.now += 0.125
    assert writer.steps == 20
    assert writer.writes == 2
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
    assert (job.progress_stage, job.progress_step, job.progress_total) == ("decoder", 17, 20)
    with db_sessions.begin() as session:  # the transaction that completes the stage
        assert writer.finish(session)
    assert writer.writes == 3
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
    assert (job.progress_stage, job.progress_step, job.progress_total) == ("decoder", 20, 20)
    assert job.progress == pytest.approx(2 / 3)


def test_a_stage_shorter_than_the_interval_writes_only_its_last_step(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    clock = FakeClock()
    writer = ProgressWriter(db_sessions, _claimed(db_sessions, job_id), interval_s=1.0,
                            cancel_check_s=0.25, clock=clock)  # fmt: skip
    for step in range(1, 5):
        writer(StepProgress("prior", step, 4))
        clock.now += 0.05
    assert writer.writes == 0  # nothing written while the stage ran
    with db_sessions.begin() as session:
        assert writer.finish(session)
        assert writer.finish(session)  # once only: nothing left to write
    assert writer.writes == 1
    with db_sessions() as session:
        events = session.scalars(
            select(JobEvent.event).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
        ).all()
    assert list(events).count("progress") == 1


def test_finish_reports_a_lost_claim(db_sessions: Sessions, make_job: Callable[..., str]) -> None:
    job_id = make_job()
    writer = ProgressWriter(db_sessions, _claimed(db_sessions, job_id), interval_s=60)
    writer(StepProgress("prior", 2, 2))
    with db_sessions.begin() as session:
        session.get_one(Job, job_id).attempt = 99  # another worker re-claimed it
    with db_sessions.begin() as session:
        assert not writer.finish(session)


def test_cancel_is_seen_within_one_step(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    clock = FakeClock()
    writer = ProgressWriter(db_sessions, _claimed(db_sessions, job_id), interval_s=60, clock=clock)
    writer(StepProgress("prior", 1, 10))
    with db_sessions.begin() as session:
        session.get_one(Job, job_id).status = "cancelled"
    with pytest.raises(JobCancelled):
        writer(StepProgress("prior", 2, 10))  # no write is due: the status read catches it


def test_cancel_checks_are_rate_limited(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    clock = FakeClock()
    writer = ProgressWriter(db_sessions, _claimed(db_sessions, job_id), interval_s=60,
                            cancel_check_s=0.25, clock=clock)  # fmt: skip
    writer(StepProgress("prior", 1, 10))
    with db_sessions.begin() as session:
        session.get_one(Job, job_id).status = "cancelled"
    writer(StepProgress("prior", 2, 10))  # within 0.25 s of the last read: not read again
    clock.now += 0.3
    with pytest.raises(JobCancelled):
        writer(StepProgress("prior", 3, 10))  # the first step after 0.25 s sees it


def test_lost_claim_stops_the_stage(db_sessions: Sessions, make_job: Callable[..., str]) -> None:
    job_id = make_job()
    writer = ProgressWriter(db_sessions, _claimed(db_sessions, job_id), interval_s=0.0)
    with db_sessions.begin() as session:
        session.get_one(Job, job_id).attempt = 99  # another worker re-claimed it
    with pytest.raises(ClaimLost):
        writer(StepProgress("prior", 1, 10))


def test_writers_of_a_batch_share_one_transaction_and_keep_their_own_endings(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    kept, cancelled = make_job(), make_job()
    writers = {
        job_id: ProgressWriter(db_sessions, _claimed(db_sessions, job_id), interval_s=0.0)
        for job_id in (kept, cancelled)
    }
    with db_sessions.begin() as session:
        session.get_one(Job, cancelled).status = "cancelled"
    raised: dict[str, type[Exception]] = {}
    with one_transaction():
        for job_id, writer in writers.items():
            try:
                writer(StepProgress("prior", 1, 10))
            except (JobCancelled, ClaimLost) as exc:
                raised[job_id] = type(exc)
    assert raised == {cancelled: JobCancelled}
    with db_sessions() as session:
        assert session.get_one(Job, kept).progress_step == 1  # committed with the block
        assert session.get_one(Job, cancelled).progress_step == 0
