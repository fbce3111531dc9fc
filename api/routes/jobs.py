"""/v1/jobs: submit (store inputs, commit the row, then enqueue), read, list, cancel, images."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.auth import owner_filter
from api.deps import (
    PrincipalDep,
    QueueDep,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
    StorageDep,
)
from api.job_request import check_job_create, parse_job_create
from api.moderation import screen_prompt
from api.rate_limits import enforce_create_rate
from api.schemas.errors import error_responses
from api.schemas.jobs import JobPublic, JobsPublic, job_create_openapi
from api.submission import request_fingerprint, submit_job, view_job
from shared.db import jobs as job_store
from shared.db.jobs import JobFilter
from shared.db.ownership import get_owned_job
from shared.db.queue_position import fleet_pace
from shared.db.states import ACTIVE, JobStatus
from shared.errors import Conflict, Gone, InvalidInput
from shared.image_urls import (
    MAX_EXPIRES,
    MAX_SIGNATURE_CHARS,
    remaining_s,
    verify_image_signature,
)
from shared.job_params import KINDS, MAX_DB_INT
from shared.retention import DELETED_BY_CLIENT, expire_job

router = APIRouter(prefix="/v1", tags=["jobs"])
DEFAULT_PAGE = 20
MAX_PAGE = 100
STAGE_STATUSES = frozenset(status.value for status in ACTIVE)


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobPublic,
    dependencies=[Depends(enforce_create_rate)],
    openapi_extra=job_create_openapi(),
    # Idempotency-Key in flight or mismatched, rate limit or quota.
    responses=error_responses(409, 422, 429),
)
async def create_job(
    request: Request,
    response: Response,
    settings: SettingsDep,
    factory: SessionFactoryDep,
    storage: StorageDep,
    queue: QueueDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> JobPublic:
    """Submit a generate, variation or edit job (JSON with base64 images, or multipart)."""
    job_in, uploads = await parse_job_create(request, settings.limits)
    checked = await run_in_threadpool(check_job_create, job_in, uploads, settings)
    # Moderation: the lexical prompt check, after validation and before any input is stored
    # or any message enqueued; a blocked prompt answers 400 content_policy_violation.
    await run_in_threadpool(screen_prompt, factory, settings, checked, principal.api_key_id)
    sent = job_in.model_dump(mode="json", exclude_unset=True, exclude={"image", "mask"})
    public, created = await run_in_threadpool(
        partial(
            submit_job,
            factory,
            storage,
            queue,
            checked,
            principal=principal,
            idempotency_key=idempotency_key,
            fingerprint=request_fingerprint("/v1/jobs", sent, uploads),
            settings=settings,
        )
    )
    response.headers["Location"] = f"/v1/jobs/{public.id}"
    if not created:
        response.status_code = 200
    return public


@router.get("/jobs/{job_id}", response_model=JobPublic)
def read_job(
    job_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> JobPublic:
    """Status, stage, progress, error, times and the URLs of published images."""
    job = get_owned_job(session=session, job_id=job_id, owner=owner_filter(principal))
    return view_job(session, job, settings)


@router.get("/jobs", response_model=JobsPublic)
def list_jobs(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    status: Annotated[list[str] | None, Query(max_length=16)] = None,
    kind: Annotated[list[str] | None, Query(max_length=16)] = None,
    created_after: Annotated[datetime | None, Query()] = None,
    created_before: Annotated[datetime | None, Query()] = None,
) -> JobsPublic:
    """Your jobs (every job for an admin key) newest first; pass next_cursor as `cursor`.

    Filters: `status` and `kind` (repeat for several), `created_after` / `created_before`
    (ISO 8601 times; a time without a zone is UTC)."""
    where = JobFilter(
        statuses=_allowed_values("status", status, [s.value for s in JobStatus]),
        kinds=_allowed_values("kind", kind, list(KINDS)),
        created_after=_utc(created_after),
        created_before=_utc(created_before),
    )
    page = job_store.list_jobs(
        session=session, limit=limit, cursor=cursor, owner=owner_filter(principal), where=where
    )
    pace = fleet_pace(session, stale_after_s=settings.heartbeat_stale_s)
    return JobsPublic(
        data=[view_job(session, job, settings, pace=pace) for job in page.jobs],
        next_cursor=page.next_cursor,
        has_more=page.next_cursor is not None,
    )


def _allowed_values(param: str, given: list[str] | None, allowed: list[str]) -> tuple[str, ...]:
    unknown = [value for value in given or [] if value not in allowed]
    if unknown:
        raise InvalidInput(f"{param} {unknown[0]!r} is not one of {allowed}", param=param)
    return tuple(dict.fromkeys(given or []))


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.delete("/jobs/{job_id}", response_model=JobPublic, responses=error_responses(409))
def delete_job(
    job_id: str,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> JobPublic:
    """Delete your job's inputs, images and embeddings from storage; it becomes `expired`.

    A queued or held job is cancelled first; a running one must be cancelled and stop
    before it can be deleted (409). Its moderation ledger rows stay.
    """
    job = get_owned_job(session=session, job_id=job_id, owner=owner_filter(principal))
    if job.status in (JobStatus.queued.value, JobStatus.held.value):
        job = job_store.cancel_job(session=session, job_id=job_id)
    if job.status in STAGE_STATUSES:
        raise Conflict(
            f"job {job_id} is running its {job.status} stage; cancel it (POST "
            f"/v1/jobs/{job_id}/cancel) and delete it once it has stopped", param="job_id",
        )  # fmt: skip
    if job.status != JobStatus.expired.value:
        expire_job(session, storage, job, reason=DELETED_BY_CLIENT)
    session.commit()
    return view_job(session, job_store.get_job(session=session, job_id=job_id), settings)


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic, responses=error_responses(409))
def cancel_job(
    job_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> JobPublic:
    """Cancel a queued, held or running job; a running stage stops at its next step."""
    get_owned_job(session=session, job_id=job_id, owner=owner_filter(principal))
    job = job_store.cancel_job(session=session, job_id=job_id)
    session.commit()
    return view_job(session, job, settings)


@router.get(
    "/jobs/{job_id}/images/{index}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **error_responses(403, 410)},
)
def read_job_image(
    job_id: str,
    index: Annotated[int, Path(ge=0, le=MAX_DB_INT)],
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    expires: Annotated[int | None, Query(ge=0, le=MAX_EXPIRES)] = None,
    signature: Annotated[str | None, Query(max_length=MAX_SIGNATURE_CHARS)] = None,
) -> Response:
    """A published output PNG; 404 while the image is not (yet) published.

    A signed URL (expires + signature, as job and images responses give) needs no
    Authorization; a tampered or expired one is a 403.
    """
    max_age = 3600
    if expires is not None or signature is not None:
        verify_image_signature(settings, job_id, index, expires=expires, signature=signature)
        max_age = remaining_s(expires or 0)
    else:
        get_owned_job(session=session, job_id=job_id, owner=owner_filter(principal))
    job = job_store.get_job(session=session, job_id=job_id)
    if job.status == JobStatus.expired.value:
        raise Gone(f"the images of job {job_id} were removed ({job.status_reason})",
                   param="job_id")  # fmt: skip
    image = job_store.get_published_image(session=session, job_id=job_id, index=index)
    data = storage.get_bytes(image.storage_key)
    headers = {"Cache-Control": f"private, max-age={max_age}"}
    return Response(content=data, media_type="image/png", headers=headers)
