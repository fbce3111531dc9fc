"""GET /v1/jobs/{id}/manifest (what each stage ran with) and POST /v1/jobs/{id}/replay."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from api.auth import owner_filter
from api.deps import (
    PrincipalDep,
    QueueDep,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
    StorageDep,
)
from api.moderation import screen_prompt
from api.rate_limits import enforce_create_rate
from api.replay import replay_request
from api.schemas.errors import error_responses
from api.schemas.jobs import JobPublic
from api.schemas.manifest import ManifestPublic, manifest_public
from api.submission import request_fingerprint, submit_job
from shared.db.embeddings import embeddings_for_jobs
from shared.db.ownership import get_owned_job

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.get("/jobs/{job_id}/manifest", response_model=ManifestPublic)
def read_job_manifest(job_id: str, session: SessionDep, principal: PrincipalDep) -> ManifestPublic:
    """Per image: each stage's seeds, steps, sampler, guidance, family and weight checksums,
    code version, device, dtype, batch size and batch invariance (the key's own jobs)."""
    job = get_owned_job(session=session, job_id=job_id, owner=owner_filter(principal))
    return manifest_public(job, embeddings_for_jobs(session, [job.id])[job.id])


@router.post(
    "/jobs/{job_id}/replay",
    status_code=202,
    response_model=JobPublic,
    dependencies=[Depends(enforce_create_rate)],
    responses=error_responses(409, 429),
)
def replay_job(
    job_id: str,
    response: Response,
    settings: SettingsDep,
    factory: SessionFactoryDep,
    storage: StorageDep,
    queue: QueueDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> JobPublic:
    """A new job from a succeeded job's manifest: same kind, prompt, seed, parameters and
    inputs (copied), counted against quota and rate limits like any create. It says
    `reproducible: false` with a reason when its bytes cannot match the original's."""
    with factory() as session:
        original = get_owned_job(session=session, job_id=job_id, owner=owner_filter(principal))
        checked = replay_request(original, storage, settings)
    screen_prompt(factory, settings, checked, principal.api_key_id)
    public, created = submit_job(
        factory,
        storage,
        queue,
        checked,
        principal=principal,
        idempotency_key=idempotency_key,
        fingerprint=request_fingerprint(f"/v1/jobs/{job_id}/replay", {}, {}),
        settings=settings,
    )
    response.headers["Location"] = f"/v1/jobs/{public.id}"
    if not created:
        response.status_code = 200
    return public
