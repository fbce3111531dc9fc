"""The active-job quota of an API key: an atomic count-and-insert under the key row's lock."""

from __future__ import annotations

import math
import statistics
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.db.models import ApiKey, Job
from shared.db.states import JobStatus

# Queued plus running: what occupies the farm on the key's behalf (held jobs wait on a human).
ACTIVE_STATUSES = (JobStatus.queued, JobStatus.prior, JobStatus.decoder, JobStatus.upsampler)
# Retry-After when the key has no finished job to learn a duration from.
FALLBACK_JOB_S = 30.0
RECENT_JOBS = 20


def lock_key(*, session: Session, api_key_id: str) -> None:
    """Take the key row's lock until commit: a row lock on PostgreSQL, the write lock on
    SQLite. Make it the transaction's first statement, so the count that follows is current.
    """
    session.execute(
        update(ApiKey).where(ApiKey.id == api_key_id).values(rpm=ApiKey.rpm),
        execution_options={"synchronize_session": False},
    )


def count_active_jobs(*, session: Session, api_key_id: str) -> int:
    """How many of the key's jobs are queued or running."""
    query = select(func.count()).where(
        Job.api_key_id == api_key_id, Job.status.in_([s.value for s in ACTIVE_STATUSES])
    )
    return int(session.execute(query).scalar_one())


def retry_after_estimate(*, session: Session, api_key_id: str, now: datetime) -> int:
    """Seconds until the key's earliest active job is likely done, from its recent jobs'
    median run time (FALLBACK_JOB_S without history); at least 1."""
    earliest = session.execute(
        select(Job.started_at)
        .where(Job.api_key_id == api_key_id, Job.status.in_([s.value for s in ACTIVE_STATUSES]))
        .order_by(Job.created_at, Job.id)
        .limit(1)
    ).first()
    recent = session.execute(
        select(Job.started_at, Job.finished_at)
        .where(
            Job.api_key_id == api_key_id,
            Job.status == JobStatus.succeeded.value,
            Job.started_at.is_not(None),
            Job.finished_at.is_not(None),
        )
        .order_by(Job.finished_at.desc())
        .limit(RECENT_JOBS)
    ).all()
    durations = [(done - began).total_seconds() for began, done in recent if began and done]
    typical = statistics.median(durations) if durations else FALLBACK_JOB_S
    started = earliest[0] if earliest is not None and earliest[0] is not None else now
    return max(1, math.ceil(typical - (now - started).total_seconds()))
