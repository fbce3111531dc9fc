"""/v1/jobs: submit (store inputs, commit the row, then enqueue), read, list, cancel, images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import QueueDep, SessionDep, SessionFactoryDep, SettingsDep, StorageDep
from api.job_request import check_job_create, parse_job_create
from api.moderation import screen_prompt
from api.schemas.jobs import JobPublic, JobsPublic, job_public
from api.submission import base_url_for, submit_job, view_job
from shared.db import jobs as job_store

router = APIRouter(prefix="/v1", tags=["jobs"])
DEFAULT_PAGE = 20
MAX_PAGE = 100


@router.post("/jobs", status_code=202, response_model=JobPublic)
async def create_job(
    request: Request,
    response: Response,
    settings: SettingsDep,
    factory: SessionFactoryDep,
    storage: StorageDep,
    queue: QueueDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JobPublic:
    """Submit a generate, variation or edit job (JSON with base64 images, or multipart)."""
    job_in, uploads = await parse_job_create(request, settings.limits)
    checked = await run_in_threadpool(check_job_create, job_in, uploads, settings.limits)
    # Moderation: the lexical prompt check, after validation and before any input is stored
    # or any message enqueued; a blocked prompt answers 400 content_policy_violation.
    await run_in_threadpool(screen_prompt, factory, settings, checked)
    public, created = await run_in_threadpool(
        submit_job,
        factory,
        storage,
        queue,
        checked,
        idempotency_key,
        base_url_for(request, settings),
    )
    response.headers["Location"] = f"/v1/jobs/{public.id}"
    if not created:
        response.status_code = 200
    return public


@router.get("/jobs/{job_id}", response_model=JobPublic)
def read_job(
    job_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> JobPublic:
    """Status, stage, progress, error, times and the URLs of published images."""
    job = job_store.get_job(session=session, job_id=job_id)
    return view_job(session, job, base_url_for(request, settings))


@router.get("/jobs", response_model=JobsPublic)
def list_jobs(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> JobsPublic:
    """Jobs newest first; pass next_cursor back as `cursor` for the next page."""
    page = job_store.list_jobs(session=session, limit=limit, cursor=cursor)
    base_url = base_url_for(request, settings)
    images = job_store.published_images_by_job(
        session=session, job_ids=[job.id for job in page.jobs]
    )
    return JobsPublic(
        data=[job_public(job, images[job.id], base_url) for job in page.jobs],
        next_cursor=page.next_cursor,
        has_more=page.next_cursor is not None,
    )


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic)
def cancel_job(
    job_id: str, request: Request, session: SessionDep, settings: SettingsDep
) -> JobPublic:
    """Cancel a queued, held or running job; a running stage stops at its next step."""
    job = job_store.cancel_job(session=session, job_id=job_id)
    session.commit()
    return view_job(session, job, base_url_for(request, settings))


@router.get(
    "/jobs/{job_id}/images/{index}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def read_job_image(
    job_id: str,
    index: Annotated[int, Path(ge=0)],
    session: SessionDep,
    storage: StorageDep,
) -> Response:
    """A published output PNG; 404 while the image is not (yet) published."""
    job_store.get_job(session=session, job_id=job_id)
    image = job_store.get_published_image(session=session, job_id=job_id, index=index)
    data = storage.get_bytes(image.storage_key)
    return Response(
        content=data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )
