"""Progress: written at most once per interval, cancel noticed on the very next step."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared.db.claims import Claim, claim_stage
from shared.db.models import Job
from worker.tasks.progress import ClaimLost, JobCancelled, ProgressWriter, overall_progress
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
    for step in range(1, 21):  # 20 steps in 2 s of fake time: writes at t=0, 1.0, and the end
        writer(StepProgress("decoder", step, 20))
        clock.now += 0.1
    assert writer.steps == 20
    assert writer.writes == 3
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
    assert (job.progress_stage, job.progress_step, job.progress_total) == ("decoder", 20, 20)
    assert job.progress == pytest.approx(2 / 3)


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
