"""Worker-side SQL of dynamic batching: the jobs waiting for a stage that a worker may add.

A worker that claimed one job (shared/db/claims.py claim_stage) looks here for more of the
same stage and claims each with claim_stage, in the same transaction. On PostgreSQL the rows
are read `FOR UPDATE SKIP LOCKED`, so two workers looking at once take different jobs; SQLite
serialises writers anyway (the clause is not rendered there). The claim stays the arbiter:
a job another worker took in between simply fails to claim.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import Job, StageAttempt
from shared.db.states import JobStatus, Stage


def waiting_jobs(
    session: Session, *, stage: Stage | str, exclude: Collection[str], limit: int
) -> list[Job]:
    """Up to `limit` jobs, oldest first, waiting for `stage` with no holder and no attempt yet.

    Waiting: queued (prior) or moved on to `stage` (decoder, upsampler). A job that already
    tried the stage (a retry waiting out its backoff, a handed-back job) is left to its own
    message, so batching never shortens a backoff.
    """
    stage = Stage(stage)
    status = JobStatus.queued if stage == Stage.prior else JobStatus(stage.value)
    tried = (
        select(StageAttempt.id)
        .where(StageAttempt.job_id == Job.id, StageAttempt.stage == stage)
        .exists()
    )
    query = (
        select(Job)
        .where(Job.status == status, Job.worker_id.is_(None), ~tried)
        .order_by(Job.created_at, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Job)
    )
    if exclude:
        query = query.where(Job.id.not_in(list(exclude)))
    return list(session.scalars(query))
