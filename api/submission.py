"""Submitting a checked request: quota, Idempotency-Key, store inputs, commit, then enqueue.

Both job APIs (our /v1/jobs and the OpenAI-compatible /v1/images/*) create jobs only here, so
the active-job quota and the idempotency rules hold for both.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import replace

from sqlalchemy.orm import Session, sessionmaker

from api.auth import Principal
from api.embedding_inputs import store_embedding_inputs
from api.job_request import JobRequest
from api.schemas.jobs import JobPublic, job_public
from shared.db import idempotency, quotas
from shared.db import jobs as job_store
from shared.db.base import new_id, utcnow
from shared.db.claims import count_stage_attempts
from shared.db.embeddings import embeddings_for_jobs
from shared.db.job_events import record_event
from shared.db.models import Job
from shared.db.queue_position import FleetPace, standing
from shared.db.states import STAGE_ORDER, Stage
from shared.errors import QueueUnavailable, QuotaExceeded
from shared.metrics import count_submitted
from shared.queue.dispatch import StageQueue
from shared.settings import Settings
from shared.storage.base import Storage
from shared.storage.keys import input_key

# A request whose Idempotency-Key is in flight waits this long for the first one's answer
# before it answers 409 (the first request only stores inputs, commits and enqueues).
IN_FLIGHT_WAIT_S = 3.0
IN_FLIGHT_POLL_S = 0.05
STAGE_NAMES = frozenset(stage.value for stage in STAGE_ORDER)


def current_stage_attempts(session: Session, job: Job) -> int:
    """Claims of the job's current (or, once it ended, last) stage; 0 before any started."""
    stage = job.status if job.status in STAGE_NAMES else job.progress_stage
    return count_stage_attempts(session, job_id=job.id, stage=stage) if stage else 0


def view_job(
    session: Session, job: Job, settings: Settings, *, pace: FleetPace | None = None
) -> JobPublic:
    """The public object of one job: its images, its queue standing while it waits."""
    images = job_store.images_for_job(session=session, job_id=job.id)
    place = standing(session, job, stale_after_s=settings.heartbeat_stale_s, pace=pace)
    embeddings = embeddings_for_jobs(session, [job.id])[job.id]
    return job_public(job, images, settings, standing=place,
                      stage_attempts=current_stage_attempts(session, job),
                      embeddings=embeddings)  # fmt: skip


def request_fingerprint(
    route: str, fields: Mapping[str, object], uploads: Mapping[str, bytes]
) -> str:
    """SHA-256 of a request's canonical form: the route, the fields the client sent (key
    order and multipart boundaries do not matter) and the SHA-256 of each upload."""
    canonical = {
        "route": route,
        "fields": dict(fields),
        "uploads": {name: hashlib.sha256(data).hexdigest() for name, data in uploads.items()},
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _store_inputs(storage: Storage, job_id: str, checked: JobRequest) -> list[str | None]:
    keys: list[str | None] = []
    for name, upload in (("image", checked.image), ("mask", checked.mask)):
        if upload is None:
            keys.append(None)
            continue
        key = input_key(job_id, f"{name}.{upload.extension}")
        storage.put_bytes(key, upload.data, upload.content_type)
        keys.append(key)
    return keys


def _check_quota(session: Session, principal: Principal) -> None:
    """Raise QuotaExceeded if the key is at max_active_jobs; the key row stays locked until
    the caller commits, so concurrent submissions are counted one after another."""
    if principal.api_key_id is None or principal.max_active_jobs is None:
        return
    quotas.lock_key(session=session, api_key_id=principal.api_key_id)
    active = quotas.count_active_jobs(session=session, api_key_id=principal.api_key_id)
    if active < principal.max_active_jobs:
        return
    retry = quotas.retry_after_estimate(
        session=session, api_key_id=principal.api_key_id, now=utcnow()
    )
    raise QuotaExceeded(
        f"key {principal.name!r} has {active} active (queued or running) jobs, its limit "
        f"max_active_jobs={principal.max_active_jobs}; retry in about {retry} s or cancel one",
        retry_after_s=retry,
    )


def _create(
    factory: sessionmaker[Session],
    storage: Storage,
    checked: JobRequest,
    principal: Principal,
    record_id: str | None,
) -> Job:
    """Store the inputs, then in one transaction: quota check, job row, idempotency link."""
    job_id = new_id()
    # Embedding inputs (a 404 for an id the caller does not own) and mix images first.
    embedded = store_embedding_inputs(factory, storage, job_id, checked, principal)
    stored = [*_store_inputs(storage, job_id, checked), *embedded.keys]
    try:
        with factory() as session:
            _check_quota(session, principal)
            job_in = checked.new_job(
                input_image_key=stored[0], mask_key=stored[1],
                input_embedding_key=embedded.input_embedding_key, mix=embedded.mix,
            )  # fmt: skip
            job_in = replace(job_in, api_key_id=principal.api_key_id)
            job = job_store.create_job(session=session, job_in=job_in, job_id=job_id)
            record_event(session, job.id, "queued")  # the first event of its stream
            if record_id is not None:
                idempotency.attach_job(session=session, record_id=record_id, job_id=job.id)
            session.commit()
            return job
    except BaseException:
        for key in stored:  # no row points at them: do not leave them behind
            if key is not None:
                storage.delete(key)
        raise


def _earlier_answer(
    factory: sessionmaker[Session], principal: Principal, key: str, fingerprint: str
) -> idempotency.Claim:
    """Claim the key, or wait (briefly) for the answer of the request that holds it."""
    deadline = time.monotonic() + IN_FLIGHT_WAIT_S
    with factory() as session:
        while True:
            try:
                return idempotency.claim_key(
                    session=session, scope=principal.scope, key=key,
                    fingerprint=fingerprint, now=utcnow(),
                )  # fmt: skip
            except idempotency.KeyInFlight:
                if time.monotonic() >= deadline:
                    raise
            session.rollback()
            time.sleep(IN_FLIGHT_POLL_S)


def submit_job(
    factory: sessionmaker[Session],
    storage: Storage,
    queue: StageQueue,
    checked: JobRequest,
    *,
    principal: Principal,
    idempotency_key: str | None = None,
    fingerprint: str | None = None,
    settings: Settings,
) -> tuple[JobPublic, bool]:
    """Create and enqueue a job for `principal`; the bool says whether one was created.

    With an Idempotency-Key (scoped to the principal), a request with the same fingerprint
    gets the first request's job (created False); another fingerprint is a 422
    idempotency_key_mismatch; a first request still in flight after IN_FLIGHT_WAIT_S is a
    409 idempotency_key_in_use. Over the key's max_active_jobs is a 429 quota_exceeded.
    """
    record_id: str | None = None
    if idempotency_key is not None:
        if fingerprint is None:
            raise TypeError("submit_job needs the request's fingerprint with an idempotency key")
        claim = _earlier_answer(factory, principal, idempotency_key, fingerprint)
        if claim.job_id is not None:
            with factory() as session:
                earlier = job_store.get_job(session=session, job_id=claim.job_id)
                return view_job(session, earlier, settings), False
        record_id = claim.record_id
    try:
        job = _create(factory, storage, checked, principal, record_id)
        count_submitted(job.kind)  # the row is committed: a job now exists, even if unpublished
        # The answer shows the job as accepted (queued), read before the message goes out: a
        # fast worker may claim it at once, and GET shows its later states.
        with factory() as session:
            row = job_store.get_job(session=session, job_id=job.id)
            accepted = view_job(session, row, settings)
        try:
            queue.enqueue(job.id, Stage.prior, job.attempt)
        except QueueUnavailable as exc:
            # Nothing is lost silently: the row says why it will not run.
            with factory() as session:
                job_store.mark_enqueue_failed(session=session, job_id=job.id, message=exc.message)
                session.commit()
            raise
    except BaseException:
        if record_id is not None:  # the first request failed: a retry may try afresh
            with factory() as session:
                idempotency.release_key(session=session, record_id=record_id)
                session.commit()
        raise
    return accepted, True
