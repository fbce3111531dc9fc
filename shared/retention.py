"""Retention: finished jobs lose their stored files after a time, or when their owner deletes.

Files go first, then the row turns `expired`; run again after a crash, it deletes what is
left and finishes the change. The moderation ledger keeps its rows (it is append-only).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shared.db.base import utcnow
from shared.db.models import Embedding, Job
from shared.db.states import TERMINAL, JobStatus, transition
from shared.settings import Settings
from shared.storage.base import Storage
from shared.storage.keys import job_prefix

BATCH = 100
EXPIRED_BY_RETENTION = "expired_by_retention"
DELETED_BY_CLIENT = "deleted_by_client"
INPUT_KINDS = ("variation", "edit", "mix")  # the kinds that upload inputs


def expire_job(session: Session, storage: Storage, job: Job, *, reason: str) -> bool:
    """Delete the job's files and mark it expired; False if it is not finished (or already
    expired). The caller commits."""
    if job.status not in {s.value for s in TERMINAL}:
        return False
    storage.delete_prefix(job_prefix(job.id))
    session.execute(delete(Embedding).where(Embedding.job_id == job.id))  # their files are gone
    return transition(session, job.id, [JobStatus(job.status)], JobStatus.expired,
                      status_reason=reason, finished_at=job.finished_at)  # fmt: skip


def _drop_inputs(session: Session, storage: Storage, cutoff: datetime, now: datetime) -> int:
    """Remove the inputs folder (uploads, copied embeddings, mix images) of finished jobs."""
    rows = session.scalars(
        select(Job).where(Job.status.in_([s.value for s in TERMINAL]), Job.finished_at < cutoff,
                          Job.kind.in_(INPUT_KINDS), Job.inputs_removed_at.is_(None))
        .limit(BATCH)
    ).all()  # fmt: skip
    for job in rows:
        storage.delete_prefix(f"{job_prefix(job.id)}inputs/")
        session.execute(update(Job).where(Job.id == job.id).values(
            input_image_key=None, mask_key=None, input_embedding_key=None,
            inputs_removed_at=now))  # fmt: skip
    return len(rows)


def run_retention(
    session: Session, storage: Storage, settings: Settings, *, now: datetime | None = None
) -> int:
    """One cleanup pass (at most BATCH jobs of each kind); how many jobs it changed."""
    now = now or utcnow()
    changed = 0
    policy = settings.retention
    if policy.inputs_s is not None:
        changed += _drop_inputs(session, storage, now - timedelta(seconds=policy.inputs_s), now)
    if policy.job_s is not None:
        cutoff = now - timedelta(seconds=policy.job_s)
        due = session.scalars(
            select(Job).where(Job.status.in_([s.value for s in TERMINAL]),
                              Job.finished_at < cutoff).limit(BATCH)
        ).all()  # fmt: skip
        changed += sum(expire_job(session, storage, job, reason=EXPIRED_BY_RETENTION)
                       for job in due)  # fmt: skip
    return changed
