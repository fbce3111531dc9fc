"""/v1/admin/moderation: list held and rejected jobs with verdicts; release or confirm them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from api.auth import require_admin_principal
from api.deps import QueueDep, SessionDep, SettingsDep
from api.schemas.admin import (
    ModeratedJobPublic,
    ModeratedJobsPublic,
    ReviewCreate,
    ReviewResult,
    review_public,
    verdict_public,
)
from api.schemas.jobs import job_public
from shared.db import jobs as job_store
from shared.db import verdicts as ledger
from shared.db.models import Job
from shared.db.states import Stage
from shared.errors import QueueUnavailable
from shared.settings import Settings

MAX_PAGE = 200


router = APIRouter(
    # Admin keys (or the bootstrap UNCLIP_ADMIN_TOKEN), checked by api/auth.py.
    prefix="/v1/admin/moderation",
    tags=["admin"],
    dependencies=[Depends(require_admin_principal)],
)


def _views(session: Session, jobs: list[Job], settings: Settings) -> list[ModeratedJobPublic]:
    ids = [job.id for job in jobs]
    verdicts = ledger.verdicts_for_jobs(session=session, job_ids=ids)
    reviews = ledger.reviews_for_jobs(session=session, job_ids=ids)
    images = job_store.published_images_by_job(session=session, job_ids=ids)
    return [
        ModeratedJobPublic(
            job=job_public(job, images[job.id], settings),
            verdicts=[verdict_public(v) for v in verdicts[job.id]],
            reviews=[review_public(r) for r in reviews[job.id]],
        )
        for job in jobs
    ]


@router.get("/jobs", response_model=ModeratedJobsPublic)
def list_moderated_jobs(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> ModeratedJobsPublic:
    """Held and rejected jobs (or only `status=held` / `status=rejected`), newest first."""
    jobs = ledger.list_moderated_jobs(
        session=session, statuses=status or ["held", "rejected"], limit=limit
    )
    return ModeratedJobsPublic(data=_views(session, jobs, settings))


@router.get("/jobs/{job_id}", response_model=ModeratedJobPublic)
def read_moderated_job(
    job_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> ModeratedJobPublic:
    """One job with its verdicts and reviews (any status: the ledger keeps every check)."""
    job = job_store.get_job(session=session, job_id=job_id)
    return _views(session, [job], settings)[0]


def commit_review(session: Session, queue: QueueDep, outcome: ledger.ReviewOutcome) -> None:
    """Commit a review, then send a released job that was not rendered back to the queue
    (also the path of an upheld appeal, api/routes/appeals.py)."""
    session.commit()
    if outcome.requeue:
        try:
            queue.enqueue(outcome.job.id, Stage.prior, outcome.job.attempt)
        except QueueUnavailable as exc:
            job_store.mark_enqueue_failed(session=session, job_id=outcome.job.id,
                                          message=exc.message)
            session.commit()
            raise
    session.refresh(outcome.job)


def _review(
    action: str, job_id: str, body: ReviewCreate, request: Request, session: Session,
    settings: Settings, queue: QueueDep,
) -> ReviewResult:
    outcome = ledger.review_job(
        session=session, job_id=job_id, action=action, reason=body.reason, reviewer=body.reviewer
    )
    commit_review(session, queue, outcome)
    view = _views(session, [outcome.job], settings)[0]
    return ReviewResult(
        **view.model_dump(), published_images=outcome.published, requeued=outcome.requeue
    )


@router.post("/jobs/{job_id}/release", response_model=ReviewResult)
def release_job(
    job_id: str, body: ReviewCreate, request: Request, session: SessionDep,
    settings: SettingsDep, queue: QueueDep,
) -> ReviewResult:
    """Release a held job: publish its held images, or send it back to the queue."""
    return _review("release", job_id, body, request, session, settings, queue)


@router.post("/jobs/{job_id}/confirm", response_model=ReviewResult)
def confirm_job(
    job_id: str, body: ReviewCreate, request: Request, session: SessionDep,
    settings: SettingsDep, queue: QueueDep,
) -> ReviewResult:
    """Confirm a hold (the job becomes rejected) or a block (recorded only)."""
    return _review("confirm", job_id, body, request, session, settings, queue)
