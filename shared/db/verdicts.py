"""Moderation ledger access: append verdict and review rows, list held and rejected jobs, review."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.db.models import Job, JobImage, ModerationReview, ModerationVerdict
from shared.db.states import TRANSITIONS, JobStatus, transition
from shared.errors import Conflict, InvalidInput, NotFound
from shared.metrics import count_moderation_decision
from shared.moderation.reasons import ModerationReason, parse_reason
from shared.moderation.verdict import Verdict

ReviewAction = Literal["release", "confirm"]
REVIEW_ACTIONS: tuple[str, ...] = ("release", "confirm")
MODERATED: tuple[JobStatus, ...] = (JobStatus.held, JobStatus.rejected)
RELEASED_BY_REVIEW = "released_by_review"
# A confirmed hold whose reason could not be read (its status_reason otherwise names the
# hold's stage and category, as a block).
CONFIRMED_BY_REVIEW = "moderation_confirmed"


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
    count_moderation_decision(verdict.checker, verdict.decision.value)
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
        raise InvalidInput(
            f"status filter {list(statuses)} must be a non-empty subset of {sorted(allowed)}",
            param="status",
        )
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
    *, session: Session, job_id: str, action: str, reason: str, reviewer: str,
    via_appeal: bool = False,
) -> ReviewOutcome:
    """Release a held job (publish its images, or send it back to the queue) or confirm it.

    Confirming a held job rejects it; confirming a rejected job only records the review.
    Releasing needs a held job: a rejection is final, except that an upheld appeal
    (`via_appeal`, shared/db/appeals.py) may release it. The caller commits, then
    re-enqueues when `requeue` is set.
    """
    if action not in REVIEW_ACTIONS:
        raise InvalidInput(
            f"review action {action!r} is not one of {REVIEW_ACTIONS}", param="action"
        )
    if not reason.strip():
        raise InvalidInput("a review needs a non-empty reason", param="reason")
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}", param="job_id")
    status = JobStatus(job.status)
    allowed = releasable(via_appeal=via_appeal)
    if status not in MODERATED or (action == "release" and status not in allowed):
        need = " or ".join(allowed) if action == "release" else "held or rejected"
        raise Conflict(
            f"job {job_id} is {status}; only {need} jobs can be {action}d", param="job_id"
        )
    review = _add_review(session, job_id, action, reason.strip(), reviewer)
    if action == "confirm":
        if status is JobStatus.held:
            # The owner still sees why: the hold's stage and category, now as a refusal.
            held = parse_reason(job.status_reason)
            reason = (ModerationReason("block", held.stage, held.category).code
                      if held is not None else CONFIRMED_BY_REVIEW)  # fmt: skip
            transition(session, job_id, [JobStatus.held], JobStatus.rejected,
                       status_reason=reason)  # fmt: skip
        session.refresh(job)
        return ReviewOutcome(job=job, review=review, published=0, requeue=False)
    return _release(session, job, review)


def releasable(*, via_appeal: bool = False) -> tuple[JobStatus, ...]:
    """Statuses a release applies to: held; with an upheld appeal also rejected (the state
    table lets a rejection be overturned: rejected -> queued and -> succeeded)."""
    overturn = {JobStatus.queued, JobStatus.succeeded} <= TRANSITIONS[JobStatus.rejected]
    return (JobStatus.held, JobStatus.rejected) if via_appeal and overturn else (JobStatus.held,)


def _release(session: Session, job: Job, review: ModerationReview) -> ReviewOutcome:
    source = [JobStatus(job.status)]
    rendered = session.execute(select(func.count()).where(JobImage.job_id == job.id)).scalar_one()
    if rendered >= job.n:
        published = session.execute(
            update(JobImage).where(JobImage.job_id == job.id).values(published=True)
        ).rowcount  # type: ignore[attr-defined]
        moved = transition(
            session,
            job.id,
            source,
            JobStatus.succeeded,
            status_reason=RELEASED_BY_REVIEW,
            progress=1.0,
        )
        requeue = False
    else:
        published = 0
        moved = transition(
            session,
            job.id,
            source,
            JobStatus.queued,
            status_reason=RELEASED_BY_REVIEW,
            error_code=None,
            error_message=None,
        )
        requeue = True
    if not moved:
        raise Conflict(
            f"job {job.id} changed while being reviewed; reload and retry", param="job_id"
        )
    session.refresh(job)
    return ReviewOutcome(job=job, review=review, published=int(published), requeue=requeue)
