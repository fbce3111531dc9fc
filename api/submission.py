"""Submitting a checked request: store its inputs, commit the job row, then publish the prior.

Both job APIs (our /v1/jobs and the OpenAI-compatible /v1/images/*) create jobs only here.
"""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session, sessionmaker

from api.job_request import JobRequest
from api.schemas.jobs import JobPublic, job_public
from shared.db import jobs as job_store
from shared.db.base import new_id
from shared.db.models import Job
from shared.db.states import Stage
from shared.errors import QueueUnavailable
from shared.queue.dispatch import StageQueue
from shared.settings import Settings
from shared.storage.base import Storage
from shared.storage.keys import input_key


def base_url_for(request: Request, settings: Settings) -> str:
    return settings.public_base_url or str(request.base_url)


def view_job(session: Session, job: Job, base_url: str) -> JobPublic:
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


def submit_job(
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
                return view_job(session, earlier, base_url), False
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
        return view_job(session, job, base_url), True
