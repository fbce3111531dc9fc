"""Appeals and key enforcement: POST /v1/jobs/{id}/appeal by the owning key; admin endpoints.

Admins list open appeals and decide them (uphold releases the job through the reviewers'
release path, publishing its held images; deny confirms), and lift key suspensions.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from api.auth import owner_filter, require_admin_principal
from api.deps import PrincipalDep, QueueDep, SessionDep, SettingsDep
from api.routes.admin import commit_review
from api.schemas.appeals import (
    AppealCreate,
    AppealDecide,
    AppealDecided,
    AppealPublic,
    AppealsPublic,
    AppealWithJob,
    KeyEnforcementPublic,
    UnsuspendKey,
    action_public,
    appeal_public,
)
from api.schemas.errors import error_responses
from api.submission import view_job
from shared.db import appeals as appeal_store
from shared.db import enforcement
from shared.db.models import ApiKey, ModerationAppeal
from shared.db.ownership import get_owned_job
from shared.errors import NotFound
from shared.settings import Settings

MAX_PAGE = 200

router = APIRouter(prefix="/v1", tags=["appeals"])
admin_router = APIRouter(
    prefix="/v1/admin/moderation", tags=["admin"], dependencies=[Depends(require_admin_principal)]
)


def _with_job(session: Session, appeal: ModerationAppeal, settings: Settings) -> AppealWithJob:
    job = view_job(session, appeal.job, settings)
    return AppealWithJob(**appeal_public(appeal).model_dump(), job=job)


@router.post(
    "/jobs/{job_id}/appeal", status_code=201, response_model=AppealPublic,
    responses=error_responses(409),
)  # fmt: skip
def create_appeal(
    job_id: str, body: AppealCreate, principal: PrincipalDep, session: SessionDep
) -> AppealPublic:
    """Appeal a held or rejected job of this key (one appeal per job)."""
    job = get_owned_job(session=session, job_id=job_id, owner=owner_filter(principal))
    if job.api_key_id != principal.api_key_id:  # an admin sees the job but does not own it
        raise NotFound(f"no job with id {job_id!r} of this key", param="job_id")
    appeal = appeal_store.create_appeal(
        session=session, job=job, api_key_id=principal.api_key_id, reason=body.reason
    )
    session.commit()
    return appeal_public(appeal)


@admin_router.get("/appeals", response_model=AppealsPublic)
def list_appeals(
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> AppealsPublic:
    """Open appeals (or `status=upheld` / `status=denied`), oldest first, with their jobs."""
    rows = appeal_store.list_appeals(session=session, statuses=status or ["open"], limit=limit)
    return AppealsPublic(data=[_with_job(session, row, settings) for row in rows])


@admin_router.post("/appeals/{appeal_id}/decide", response_model=AppealDecided)
def decide_appeal(
    appeal_id: str, body: AppealDecide, session: SessionDep, settings: SettingsDep, queue: QueueDep
) -> AppealDecided:
    """Uphold (release the job, publishing its images) or deny (confirm) an open appeal."""
    decided = appeal_store.decide_appeal(
        session=session,
        appeal_id=appeal_id,
        decision=body.decision,
        reason=body.reason,
        reviewer=body.reviewer,
    )
    commit_review(session, queue, decided.outcome)
    session.refresh(decided.appeal)
    view = _with_job(session, decided.appeal, settings)
    return AppealDecided(
        **view.model_dump(),
        published_images=decided.outcome.published,
        requeued=decided.outcome.requeue,
    )


def _enforcement_view(session: Session, key: ApiKey) -> KeyEnforcementPublic:
    actions = enforcement.actions_for_key(session=session, api_key_id=key.id)
    return KeyEnforcementPublic(
        key_id=key.id,
        suspended_at=key.suspended_at,
        suspended_reason=key.suspended_reason,
        actions=[action_public(a) for a in actions],
    )


@admin_router.get("/keys/{key_id}", response_model=KeyEnforcementPublic)
def read_key_enforcement(key_id: str, session: SessionDep) -> KeyEnforcementPublic:
    """A key's suspension state and every enforcement action taken on it."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id}", param="key_id")
    return _enforcement_view(session, key)


@admin_router.post("/keys/{key_id}/unsuspend", response_model=KeyEnforcementPublic)
def unsuspend_key(key_id: str, body: UnsuspendKey, session: SessionDep) -> KeyEnforcementPublic:
    """Lift a key's moderation suspension (recorded as an unsuspend_key action)."""
    key = enforcement.unsuspend_key(
        session=session, api_key_id=key_id, reason=body.reason, actor=body.reviewer
    )
    session.commit()
    return _enforcement_view(session, key)
