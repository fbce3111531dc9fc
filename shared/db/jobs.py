"""API-side data access for jobs: create, get, list (cursor pages), cancel, and their images."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from shared.db.base import new_id
from shared.db.models import Job, JobImage
from shared.db.states import CANCELLABLE, JobStatus, transition
from shared.errors import Conflict, InvalidInput, NotFound
from shared.job_params import JobParams, ParamsUsed
from shared.storable import check_storable

if TYPE_CHECKING:  # shared.db.ownership imports this module
    from shared.db.ownership import Owner

QUEUE_UNAVAILABLE = "queue_unavailable"
CANCELLED_BY_CLIENT = "cancelled_by_client"


@dataclass(frozen=True)
class NewJob:
    """A validated request, ready to become a job row (its seed drawn by now)."""

    params: JobParams
    native_size: str | None = None  # the family's output size, as the API read it
    input_image_key: str | None = None
    mask_key: str | None = None
    webhook_url: str | None = None
    webhook_events: str | None = None  # comma-separated; None: completed only
    api_key_id: str | None = None
    # Issue 15 (embedding-level API, replay): see the columns in shared/db/models/job.py.
    input_embedding_id: str | None = None
    input_embedding_key: str | None = None
    mix: list[dict[str, Any]] | None = None
    replay_of: str | None = None
    replay_expect: dict[str, Any] | None = None


ROW_EXTRAS = tuple(f.name for f in fields(NewJob) if f.name != "params")


@dataclass(frozen=True)
class JobPage:
    """One page of jobs, newest first; next_cursor is None on the last page."""

    jobs: list[Job]
    next_cursor: str | None


def create_job(*, session: Session, job_in: NewJob, job_id: str | None = None) -> Job:
    """Add a queued job row, flushed but not committed; pass `job_id` if inputs came first."""
    job = Job(
        id=job_id or new_id(),
        status=JobStatus.queued.value,
        attempt=0,
        progress=0.0,
        **job_in.params.row_values(),
        **{name: getattr(job_in, name) for name in ROW_EXTRAS},
    )
    session.add(job)
    session.flush()
    return job


def get_job(*, session: Session, job_id: str, api_key_id: str | None = None) -> Job:
    """The job `job_id` (of that key, when one is given); NotFound otherwise."""
    job = session.get(Job, job_id)
    if job is None or (api_key_id is not None and job.api_key_id != api_key_id):
        raise NotFound(f"no job with id {job_id!r}", param="job_id")
    return job


def encode_cursor(job: Job) -> str:
    """An opaque cursor pointing just after `job` in newest-first order."""
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor points after; InvalidInput if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, job_id = json.loads(raw)
        when = datetime.fromisoformat(created)
        if when.tzinfo is None or not isinstance(job_id, str):
            raise ValueError("cursor without zone or id")
        check_storable(job_id, param="cursor")
        return when, job_id
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        raise InvalidInput(
            f"cursor {cursor!r} is not valid; pass the next_cursor of a previous page",
            param="cursor",
        ) from exc


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing shows; None (or empty) leaves that criterion out."""

    statuses: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None


def list_jobs(
    *,
    session: Session,
    limit: int,
    cursor: str | None = None,
    api_key_id: str | None = None,
    owner: Owner | None = None,
    where: JobFilter = JobFilter(),
) -> JobPage:
    """Jobs newest first, `limit` per page, after `cursor` (ordered by created_at, then id).

    `owner` (shared.db.ownership) limits them to what that caller may see; `where` filters
    by status, kind and creation time.
    """
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if api_key_id is not None:
        query = query.where(Job.api_key_id == api_key_id)
    if owner is not None:
        query = query.where(owner.clause())
    if where.statuses:
        query = query.where(Job.status.in_(where.statuses))
    if where.kinds:
        query = query.where(Job.kind.in_(where.kinds))
    if where.created_after is not None:
        query = query.where(Job.created_at > where.created_after)
    if where.created_before is not None:
        query = query.where(Job.created_at < where.created_before)
    if cursor:
        created, job_id = decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    rows = list(session.execute(query).scalars())
    page = rows[:limit]
    next_cursor = encode_cursor(page[-1]) if len(rows) > limit and page else None
    return JobPage(jobs=page, next_cursor=next_cursor)


def cancel_job(*, session: Session, job_id: str, api_key_id: str | None = None) -> Job:
    """Cancel a queued, held or running job (a running stage stops at its next step).

    Cancelling a cancelled job returns it unchanged; a finished one is a Conflict.
    """
    job = get_job(session=session, job_id=job_id, api_key_id=api_key_id)
    moved = transition(
        session,
        job_id,
        sorted(CANCELLABLE),
        JobStatus.cancelled,
        status_reason=CANCELLED_BY_CLIENT,
    )
    session.refresh(job)
    if not moved and job.status != JobStatus.cancelled:
        raise Conflict(
            f"job {job_id} is {job.status} and can no longer be cancelled; only "
            f"{', '.join(sorted(CANCELLABLE))} jobs can",
            param="job_id",
        )
    return job


def mark_enqueue_failed(*, session: Session, job_id: str, message: str) -> bool:
    """Fail a queued job whose first message the broker refused, saying why."""
    return transition(
        session,
        job_id,
        [JobStatus.queued],
        JobStatus.failed,
        error_code=QUEUE_UNAVAILABLE,
        error_message=message,
        status_reason=QUEUE_UNAVAILABLE,
    )


def images_for_job(*, session: Session, job_id: str, published_only: bool = True) -> list[JobImage]:
    """The job's output images by index; by default only those clients may see."""
    query = select(JobImage).where(JobImage.job_id == job_id).order_by(JobImage.index)
    if published_only:
        query = query.where(JobImage.published.is_(True))
    return list(session.execute(query).scalars())


def published_images_by_job(*, session: Session, job_ids: list[str]) -> dict[str, list[JobImage]]:
    """Published images of many jobs in one query, by job id, each list ordered by index."""
    found: dict[str, list[JobImage]] = {job_id: [] for job_id in job_ids}
    if not job_ids:
        return found
    query = (
        select(JobImage)
        .where(JobImage.job_id.in_(job_ids), JobImage.published.is_(True))
        .order_by(JobImage.job_id, JobImage.index)
    )
    for image in session.execute(query).scalars():
        found[image.job_id].append(image)
    return found


def get_published_image(*, session: Session, job_id: str, index: int) -> JobImage:
    """Published image `index` of a job; NotFound while it is not (yet) published."""
    query = select(JobImage).where(
        JobImage.job_id == job_id, JobImage.index == index, JobImage.published.is_(True)
    )
    image = session.execute(query).scalars().first()
    if image is None:
        raise NotFound(f"job {job_id} has no published image {index}", param="index")
    return image


def record_params_used(*, session: Session, job_id: str, used: ParamsUsed) -> ParamsUsed:
    """Record what the job runs with, once: a later stage or attempt keeps the first record."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.params_used.is_(None))
        .values(params_used=used.model_dump(mode="json"))
    )
    stored = session.execute(select(Job.params_used).where(Job.id == job_id)).scalar_one()
    return ParamsUsed.model_validate(stored)
