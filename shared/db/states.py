"""The job state machine: statuses, stages, allowed transitions, and the one conditional UPDATE."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import CursorResult, func, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from shared.db.base import utcnow
from shared.db.job_events import record_status_event
from shared.db.models.job import Job
from shared.errors import InvalidTransition
from shared.metrics import count_finished


class JobStatus(StrEnum):
    """Where a job is. A stage status means the job is at (or waiting for) that stage."""

    queued = "queued"
    prior = "prior"
    decoder = "decoder"
    upsampler = "upsampler"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    rejected = "rejected"  # moderation refused it
    held = "held"  # moderation holds it for a reviewer
    expired = "expired"  # finished, then its inputs and images were removed (retention, DELETE)


class Stage(StrEnum):
    """The three render stages; each is also a queue name and a status."""

    prior = "prior"
    decoder = "decoder"
    upsampler = "upsampler"


STAGE_ORDER: tuple[Stage, ...] = (Stage.prior, Stage.decoder, Stage.upsampler)
ACTIVE: frozenset[JobStatus] = frozenset({JobStatus.prior, JobStatus.decoder, JobStatus.upsampler})
TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.rejected}
)
CANCELLABLE: frozenset[JobStatus] = frozenset({JobStatus.queued, JobStatus.held} | ACTIVE)

_S = JobStatus
_STOP = {_S.failed, _S.cancelled, _S.rejected, _S.held}
# A stage may move to itself: a new attempt (redelivery after a lost worker) re-claims it.
# decoder -> succeeded serves sizes the decoder already renders (no upsampler pass needed).
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    _S.queued: frozenset({_S.prior} | _STOP),
    _S.prior: frozenset({_S.prior, _S.decoder} | _STOP),
    _S.decoder: frozenset({_S.decoder, _S.upsampler, _S.succeeded} | _STOP),
    _S.upsampler: frozenset({_S.upsampler, _S.succeeded} | _STOP),
    # A reviewer releases a held job (back to the queue, or published if its images are done)
    # or confirms the hold (rejected).
    _S.held: frozenset({_S.queued, _S.succeeded, _S.rejected, _S.cancelled}),
    _S.succeeded: frozenset({_S.expired}),
    _S.failed: frozenset({_S.expired}),
    _S.cancelled: frozenset({_S.expired}),
    # An upheld appeal (shared/db/appeals.py) releases a rejected job like a held one.
    _S.rejected: frozenset({_S.queued, _S.succeeded, _S.expired}),
    _S.expired: frozenset(),
}


def overall_progress(stage: str, step: int, total: int) -> float:
    """Progress over the whole job, each stage weighing a third: 0 at the start, 1 at the end."""
    index = [s.value for s in STAGE_ORDER].index(stage)
    fraction = min(max(step / total, 0.0), 1.0) if total > 0 else 0.0
    return (index + fraction) / len(STAGE_ORDER)


def next_stage(stage: Stage) -> Stage | None:
    """The stage after `stage`, or None after the upsampler."""
    index = STAGE_ORDER.index(stage)
    return STAGE_ORDER[index + 1] if index + 1 < len(STAGE_ORDER) else None


def check_transition(from_status: JobStatus | str, to_status: JobStatus | str) -> None:
    """Raise InvalidTransition unless the table allows from_status -> to_status."""
    try:
        source, target = JobStatus(from_status), JobStatus(to_status)
    except ValueError as exc:
        raise InvalidTransition(
            f"unknown status in {from_status!r} -> {to_status!r}; statuses are "
            f"{[s.value for s in JobStatus]}"
        ) from exc
    if target not in TRANSITIONS[source]:
        allowed = sorted(s.value for s in TRANSITIONS[source]) or "nothing (terminal)"
        raise InvalidTransition(
            f"job status {source} -> {target} is not allowed; from {source} "
            f"a job may go to {allowed}"
        )


def transition(
    session: Session,
    job_id: str,
    from_statuses: JobStatus | Iterable[JobStatus],
    to_status: JobStatus,
    **values: Any,
) -> bool:
    """Move a job to `to_status` iff it is in one of `from_statuses`, as one UPDATE.

    Returns False when no row changed (someone else moved it first: a duplicate delivery,
    a cancel racing a worker). `values` sets other columns in the same statement. Entering a
    stage sets started_at once; entering a terminal status sets finished_at. The caller
    commits.
    """
    sources = [from_statuses] if isinstance(from_statuses, str) else list(from_statuses)
    if not sources:
        raise InvalidTransition(f"transition of job {job_id} to {to_status} names no from-status")
    for source in sources:
        check_transition(source, to_status)
    now = utcnow()
    columns: dict[str, Any] = {"status": JobStatus(to_status).value, "updated_at": now}
    if to_status in ACTIVE and "started_at" not in values:
        columns["started_at"] = func.coalesce(Job.started_at, now)
    if to_status in TERMINAL and "finished_at" not in values:
        columns["finished_at"] = now
    columns.update(values)
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.status.in_([JobStatus(s).value for s in sources]))
        .values(**columns)
        .execution_options(synchronize_session=False)
    )
    result = cast(CursorResult[Any], session.execute(statement))
    loaded = session.identity_map.get(identity_key(Job, job_id))
    if loaded is not None:
        session.expire(loaded)  # the UPDATE bypassed the ORM: reload on next access
    if result.rowcount == 1 and to_status in TERMINAL:
        count_finished(JobStatus(to_status).value)  # unclip_jobs_finished_total
    if result.rowcount == 1:
        record_status_event(session, job_id, JobStatus(to_status).value)  # same transaction
    return result.rowcount == 1
