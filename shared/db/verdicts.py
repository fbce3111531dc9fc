"""Moderation ledger access: append verdict and review rows, list held and rejected jobs, review."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.db.models import Job, JobImage, ModerationReview, ModerationVerdict
from shared.db.states import JobStatus, transition
from shared.errors import Conflict, InvalidInput, NotFound
from shared.moderation.verdict import Verdict

ReviewAction = Literal["release", "confirm"]
REVIEW_ACTIONS: tuple[str, ...] = ("release", "confirm")
MODERATED: tuple[JobStatus, ...] = (JobStatus.held, JobStatus.rejected)
RELEASED_BY_REVIEW = "released_by_review"
CONFIRMED_BY_REVIEW = "moderation_confirmed"
CANCELLED_BY_BLOCK = "cancelled_by_moderation_block"


@dataclass(frozen=True)
class ReviewOutcome:
    """What a review did; `requeue` is True when the job must be sent to the prior queue again."""

    job: Job
    review: ModerationReview
    published: int  # images made visible by a release
    requeue: bool


def record_verdict(*, session: Session, job_id: str | None, verdict: Verdict) -> ModerationVerdict:
    """Append one verdict row (flushed, not committed); rows are never updated or deleted."""
    record = verdict.to_record()
    matched: list[dict[str, Any]] = [
        {"category": category, "terms": terms}
        for category, terms in record["matched_terms"].items()
    ]
    # The table has no detail column: flagged categories and checker detail ride along here.
    matched.append({"flagged": record["flagged"], "detail": record["detail"]})
    row = ModerationVerdict(
        job_id=job_id,
        stage=verdict.stage,
        checker=verdict.checker,
        checker_version=verdict.checker_version,
        policy_version=verdict.policy_version,
        scores=record["scores"],
        thresholds=record["thresholds"],
        decision=verdict.decision.value,
        matched_terms=matched,
    )
    session.add(row)
    session.flush()
    return row


def verdicts_for_jobs(
    *, session: Session, job_ids: Sequence[str]
) -> dict[str, list[ModerationVerdict]]:
    """Verdict rows of many jobs, oldest first, by job id."""
    found: dict[str, list[ModerationVerdict]] = {job_id: [] for job_id in job_ids}
    if job_ids:
        query = (
            select(ModerationVerdict)
            .where(ModerationVerdict.job_id.in_(list(job_ids)))
            .order_by(ModerationVerdict.created_at, ModerationVerdict.id)
        )
        for row in session.execute(query).scalars():
            found[str(row.job_id)].append(row)
    return found


def reviews_for_jobs(
    *, session: Session, job_ids: Sequence[str]
) -> dict[str, list[ModerationReview]]:
    """Review rows of many jobs, oldest first, by job id."""
    found: dict[str, list[ModerationReview]] = {job_id: [] for job_id in job_ids}
    if job_ids:
        query = (
            select(ModerationReview)
            .where(ModerationReview.job_id.in_(list(job_ids)))
            .order_by(ModerationReview.created_at, ModerationReview.id)
        )
        for row in session.execute(query).scalars():
            found[row.job_id].append(row)
    return found


def has_release(*, session: Session, job_id: str) -> bool:
    """Whether a reviewer released this job (the worker then skips the prompt/input checks)."""
    query = select(func.count()).where(
        ModerationReview.job_id == job_id, ModerationReview.action == "release"
    )
    return bool(session.execute(query).scalar_one())


def list_moderated_jobs(
    *, session: Session, statuses: Sequence[str] = MODERATED, limit: int = 50
) -> list[Job]:
    """Held and/or rejected jobs, newest first."""
    allowed = {s.value for s in MODERATED}
    bad = [s for s in statuses if s not in allowed]
    if bad or not statuses:
        raise InvalidInput(f"status filter {list(statuses)} must be a non-empty subset of "
                           f"{sorted(allowed)}", param="status")
    query = (
        select(Job)
        .where(Job.status.in_(list(statuses)))
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
    )
    return list(session.execute(query).scalars())


def _add_review(
    session: Session, job_id: str, action: str, reason: str, reviewer: str
) -> ModerationReview:
    review = ModerationReview(job_id=job_id, action=action, reason=reason, reviewer=reviewer)
    session.add(review)
    session.flush()
    return review


def review_job(
    *, session: Session, job_id: str, action: str, reason: str, reviewer: str
) -> ReviewOutcome:
    """Release a held job (publish its images, or send it back to the queue) or confirm it.

    Confirming a held job rejects it; confirming a rejected job only records the review.
    Releasing needs a held job (a block is final). The caller commits, then re-enqueues
    when `requeue` is set.
    """
    if action not in REVIEW_ACTIONS:
        raise InvalidInput(f"review action {action!r} is not one of {REVIEW_ACTIONS}",
                           param="action")
    if not reason.strip():
        raise InvalidInput("a review needs a non-empty reason", param="reason")
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}", param="job_id")
    status = JobStatus(job.status)
    if status not in MODERATED or (action == "release" and status is not JobStatus.held):
        need = "held" if action == "release" else "held or rejected"
        raise Conflict(f"job {job_id} is {status}; only {need} jobs can be {action}d",
                       param="job_id")
    review = _add_review(session, job_id, action, reason.strip(), reviewer)
    if action == "confirm":
        if status is JobStatus.held:
            transition(session, job_id, [JobStatus.held], JobStatus.rejected,
                       status_reason=CONFIRMED_BY_REVIEW)
        session.refresh(job)
        return ReviewOutcome(job=job, review=review, published=0, requeue=False)
    return _release(session, job, review)


def _release(session: Session, job: Job, review: ModerationReview) -> ReviewOutcome:
    rendered = session.execute(
        select(func.count()).where(JobImage.job_id == job.id)
    ).scalar_one()
    if rendered >= job.n:
        published = session.execute(
            update(JobImage).where(JobImage.job_id == job.id).values(published=True)
        ).rowcount  # type: ignore[attr-defined]
        moved = transition(session, job.id, [JobStatus.held], JobStatus.succeeded,
                           status_reason=RELEASED_BY_REVIEW, progress=1.0)
        requeue = False
    else:
        published = 0
        moved = transition(session, job.id, [JobStatus.held], JobStatus.queued,
                           status_reason=RELEASED_BY_REVIEW, error_code=None, error_message=None)
        requeue = True
    if not moved:
        raise Conflict(f"job {job.id} changed while being reviewed; reload and retry",
                       param="job_id")
    session.refresh(job)
    return ReviewOutcome(job=job, review=review, published=int(published), requeue=requeue)


def cancel_queued_for_key(*, session: Session, api_key_id: str | None) -> list[str]:
    """Cancel the key's jobs still waiting in the queue (policy switch cancel_queued_on_block)."""
    if api_key_id is None:
        return []
    query = select(Job.id).where(Job.api_key_id == api_key_id, Job.status == JobStatus.queued)
    cancelled = []
    for job_id in session.execute(query).scalars():
        if transition(session, job_id, [JobStatus.queued], JobStatus.cancelled,
                      status_reason=CANCELLED_BY_BLOCK):
            cancelled.append(job_id)
    return cancelled
