"""Appeals: one per job, by the owning key, of a held or rejected job; an admin decides.

A decision is a moderation_reviews row: upholding releases the job through the reviewers'
release path (its held images are published, or it goes back to the queue), denying confirms
the moderation decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db import verdicts as ledger
from shared.db.base import utcnow
from shared.db.models import Job, ModerationAppeal
from shared.db.states import JobStatus
from shared.errors import Conflict, InvalidInput, NotFound

AppealStatus = Literal["open", "upheld", "denied"]
APPEAL_STATUSES: tuple[str, ...] = ("open", "upheld", "denied")
DECISIONS: tuple[str, ...] = ("uphold", "deny")
APPEALABLE: tuple[JobStatus, ...] = (JobStatus.held, JobStatus.rejected)


@dataclass(frozen=True)
class AppealDecision:
    """A decided appeal and what the review did to its job."""

    appeal: ModerationAppeal
    outcome: ledger.ReviewOutcome


def create_appeal(
    *, session: Session, job: Job, api_key_id: str | None, reason: str
) -> ModerationAppeal:
    """File the appeal of `job` (the caller checked that `api_key_id` owns it)."""
    if not reason.strip():
        raise InvalidInput("an appeal needs a non-empty reason", param="reason")
    if job.status not in APPEALABLE:
        raise Conflict(
            f"job {job.id} is {job.status}; only held or rejected jobs can be appealed",
            param="job_id",
        )
    if appeal_for_job(session=session, job_id=job.id) is not None:
        raise Conflict(f"job {job.id} already has an appeal; one appeal per job", param="job_id")
    appeal = ModerationAppeal(
        job_id=job.id, api_key_id=api_key_id, reason=reason.strip(), status="open"
    )
    try:
        with session.begin_nested():
            session.add(appeal)
            session.flush()
    except IntegrityError as exc:  # a concurrent appeal of the same job won
        raise Conflict(
            f"job {job.id} already has an appeal; one appeal per job", param="job_id"
        ) from exc
    return appeal


def appeal_for_job(*, session: Session, job_id: str) -> ModerationAppeal | None:
    """The job's appeal, if it has one."""
    query = select(ModerationAppeal).where(ModerationAppeal.job_id == job_id)
    return session.execute(query).scalar_one_or_none()


def list_appeals(
    *, session: Session, statuses: Sequence[str] = ("open",), limit: int = 50
) -> list[ModerationAppeal]:
    """Appeals in `statuses`, oldest first (the queue reviewers work through)."""
    bad = [s for s in statuses if s not in APPEAL_STATUSES]
    if bad or not statuses:
        raise InvalidInput(
            f"appeal status filter {list(statuses)} must be a non-empty subset "
            f"of {list(APPEAL_STATUSES)}",
            param="status",
        )
    query = (
        select(ModerationAppeal)
        .where(ModerationAppeal.status.in_(list(statuses)))
        .order_by(ModerationAppeal.created_at, ModerationAppeal.id)
        .limit(limit)
    )
    return list(session.execute(query).scalars())


def decide_appeal(
    *, session: Session, appeal_id: str, decision: str, reason: str, reviewer: str
) -> AppealDecision:
    """Uphold (release the job) or deny (confirm it) an open appeal; the caller commits."""
    if decision not in DECISIONS:
        raise InvalidInput(
            f"appeal decision {decision!r} is not one of {DECISIONS}", param="decision"
        )
    appeal = session.get(ModerationAppeal, appeal_id, with_for_update=True)
    if appeal is None:
        raise NotFound(f"no appeal {appeal_id}", param="appeal_id")
    if appeal.status != "open":
        raise Conflict(f"appeal {appeal_id} is already {appeal.status}", param="appeal_id")
    action = "release" if decision == "uphold" else "confirm"
    note = f"appeal {appeal.id} {decision}: {reason.strip()}"
    outcome = ledger.review_job(
        session=session, job_id=appeal.job_id, action=action, reason=note, reviewer=reviewer,
        via_appeal=True,
    )
    appeal.status = "upheld" if decision == "uphold" else "denied"
    appeal.decided_at = utcnow()
    appeal.review_id = outcome.review.id
    session.flush()
    return AppealDecision(appeal=appeal, outcome=outcome)
