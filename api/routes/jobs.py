"""/v1/jobs: submit (store inputs, commit the row, then enqueue), read, list, cancel, images."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.deps import QueueDep, SessionDep, SessionFactoryDep, SettingsDep, StorageDep
from api.job_request import JobRequest, check_job_create, parse_job_create
from api.moderation import screen_prompt
from api.schemas.jobs import JobPublic, JobsPublic, job_public
from shared.db import jobs as job_store
from shared.db.base import new_id
from shared.db.models import Job
from shared.db.states import Stage
from shared.errors import QueueUnavailable
from shared.queue.dispatch import StageQueue
from shared.settings import Settings
from shared.storage.base import Storage
from shared.storage.keys import input_key

router = APIRouter(prefix="/v1", tags=["jobs"])
DEFAULT_PAGE = 20
MAX_PAGE = 100


def _base_url(request: Request, settings: Settings) -> str:
    return settings.public_base_url or str(request.base_url)


def _view(session: Session, job: Job, base_url: str) -> JobPublic:
    images = job_store.images_for_job(session=session, job_id=job.id)
    return job_public(job, images, base_url)


def _store_inputs(storage: Storage, job_id: str, checked: JobRequest) -> tuple[str | None, ...]:
    keys: list[str | None] = []
    for name, upload in (("image", checked.image), ("mask", checked.mask)):
        if upload is None:
            keys.append(None)
            continue
        key = input_key(job_id, f"{name}.{upload.extension}")
        storage.put_bytes(key, upload.data, upload.content_type)
        keys.append(key)
    return tuple(keys)


def _submit(
    factory: sessionmaker[Session],
    storage: Storage,
    queue: StageQueue,
    checked: JobRequest,
    idempotency_key: str | None,
    base_url: str,
) -> tuple[JobPublic, bool]:
    """Store inputs, commit the row, then publish; the bool says whether a job was created."""
    with factory() as session:
        if idempotency_key is not None:
            earlier = job_store.find_idempotent_job(
                session=session, idempotency_key=idempotency_key, api_key_id=None
            )
            if earlier is not None:
                return _view(session, earlier, base_url), False
        job_id = new_id()
        image_key, mask_key = _store_inputs(storage, job_id, checked)
        job_in = checked.new_job(
            input_image_key=image_key, mask_key=mask_key, idempotency_key=idempotency_key
        )
        job = job_store.create_job(session=session, job_in=job_in, job_id=job_id)
        session.commit()
        try:
            queue.enqueue(job.id, Stage.prior, job.attempt)
        except QueueUnavailable as exc:
            # Nothing is lost silently: the row says why it will not run.
            job_store.mark_enqueue_failed(session=session, job_id=job.id, message=exc.message)
            session.commit()
            raise
        return _view(session, job, base_url), True


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
        _submit, factory, storage, queue, checked, idempotency_key, _base_url(request, settings)
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
    return _view(session, job, _base_url(request, settings))


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
    base_url = _base_url(request, settings)
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
    return _view(session, job, _base_url(request, settings))


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
