"""What the sweeper finds and fixes: stale claims and stuck jobs, each fixed by a conditional write.

Every fix is one conditional UPDATE, so several sweepers (or a sweeper racing a worker) never
act twice on one job: the loser changes zero rows and moves on. A fix that needs a message
records it in the outbox in the same transaction; the sweeper publishes after the commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import CursorResult, and_, exists, or_, select, update
from sqlalchemy.orm import Session

from shared.db.base import utcnow
from shared.db.claims import TOO_MANY_ATTEMPTS, Claim, count_stage_attempts, release_claim
from shared.db.models import Job, OutboxMessage
from shared.db.outbox import PendingMessage, record_message
from shared.db.states import STAGE_ORDER, JobStatus, Stage, transition

HEARTBEAT_STALE = "heartbeat_stale"
StaleOutcome = Literal["requeued", "failed", "skipped"]
MOVING = [JobStatus.queued, *(JobStatus(s.value) for s in STAGE_ORDER)]


@dataclass(frozen=True)
class StuckJob:
    """A job that should be moving, with no claim and no message due."""

    job_id: str
    status: str
    attempt: int


def stale_claims(
    session: Session, *, stale_after_s: float, limit: int, now: datetime | None = None
) -> list[Claim]:
    """Claims whose worker stopped heart-beating more than `stale_after_s` ago."""
    cutoff = (now or utcnow()) - timedelta(seconds=stale_after_s)
    query = (
        select(Job.id, Job.status, Job.attempt, Job.worker_id)
        .where(
            Job.status.in_([s.value for s in STAGE_ORDER]),
            Job.worker_id.is_not(None),
            Job.heartbeat_at < cutoff,
        )
        .order_by(Job.heartbeat_at)
        .limit(limit)
    )
    return [Claim(i, Stage(s), a, w or "") for i, s, a, w in session.execute(query).all()]


def recover_stale_claim(
    session: Session,
    claim: Claim,
    *,
    stale_after_s: float,
    max_attempts: int,
    now: datetime | None = None,
) -> tuple[StaleOutcome, PendingMessage | None]:
    """Release a stale claim and record its stage's message again; past `max_attempts` fail
    the job with the reason instead. "skipped": the claim beat or moved meanwhile."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=stale_after_s)
    reason = f"worker {claim.worker_id} stopped heart-beating (stale after {stale_after_s:g} s)"
    if not release_claim(
        session, claim, status="lost", error=f"{HEARTBEAT_STALE}: {reason}", stale_before=cutoff,
        now=now,
    ):  # fmt: skip
        return "skipped", None
    tried = count_stage_attempts(session, job_id=claim.job_id, stage=claim.stage)
    if tried >= max_attempts:
        transition(
            session, claim.job_id, JobStatus(claim.stage.value), JobStatus.failed,
            worker_id=None, error_code=TOO_MANY_ATTEMPTS,
            error_message=(
                f"stage {claim.stage} was tried {tried} times (max_attempts={max_attempts}); "
                f"the last attempt was lost: {reason}"
            ),
        )  # fmt: skip
        return "failed", None
    return "requeued", record_message(
        session, job_id=claim.job_id, stage=claim.stage, attempt=claim.attempt,
        reason="stale_claim", now=now,
    )  # fmt: skip


def stuck_jobs(
    session: Session, *, stuck_after_s: float, limit: int, now: datetime | None = None
) -> list[StuckJob]:
    """Queued or between-stage jobs with no claim for `stuck_after_s` and no message pending
    in the outbox (none unpublished, none due within that window)."""
    cutoff = (now or utcnow()) - timedelta(seconds=stuck_after_s)
    pending = exists().where(
        OutboxMessage.job_id == Job.id,
        or_(OutboxMessage.published_at.is_(None), OutboxMessage.next_attempt_at > cutoff),
    )
    query = (
        select(Job.id, Job.status, Job.attempt)
        .where(
            Job.status.in_([s.value for s in MOVING]),
            Job.worker_id.is_(None),
            Job.updated_at < cutoff,
            ~pending,
        )
        .order_by(Job.updated_at)
        .limit(limit)
    )
    return [StuckJob(i, s, a) for i, s, a in session.execute(query).all()]


def requeue_stuck_job(
    session: Session, job: StuckJob, *, stuck_after_s: float, now: datetime | None = None
) -> PendingMessage | None:
    """Record the stage message of a stuck job again, if it is still stuck (one UPDATE)."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=stuck_after_s)
    touched = session.execute(
        update(Job)
        .where(
            and_(
                Job.id == job.job_id,
                Job.status == job.status,
                Job.worker_id.is_(None),
                Job.updated_at < cutoff,
            )
        )  # fmt: skip
        .values(updated_at=now)
    )
    assert isinstance(touched, CursorResult)
    if touched.rowcount != 1:
        return None
    stage = Stage.prior if job.status == JobStatus.queued else Stage(job.status)
    return record_message(
        session, job_id=job.job_id, stage=stage, attempt=job.attempt, reason="stuck", now=now
    )
