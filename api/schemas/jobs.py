"""Job schemas: JobCreate (request), JobPublic and JobsPublic (responses)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared.db.models import Job, JobImage

KINDS = ("generate", "variation", "edit")


class StepsIn(BaseModel):
    """Diffusion steps per stage; a missing stage gets the server default."""

    model_config = ConfigDict(extra="forbid")

    prior: int | None = None
    decoder: int | None = None
    upsampler: int | None = None


class JobCreate(BaseModel):
    """A render request. Ranges come from settings, so api/job_request.py checks them.

    JSON carries `image` / `mask` as base64 strings; multipart/form-data carries them as file
    parts (and the steps as steps_prior / steps_decoder / steps_upsampler fields).
    """

    model_config = ConfigDict(extra="forbid")

    kind: str = "generate"
    prompt: str | None = None
    n: int = 1
    size: str | None = None
    seed: int | None = None
    sampler: str | None = None
    steps: StepsIn | None = None
    prior_guidance: float | None = None
    decoder_guidance: float | None = None
    image: str | None = None
    mask: str | None = None


class StepsPublic(BaseModel):
    """The steps a job runs with."""

    prior: int
    decoder: int
    upsampler: int


class JobError(BaseModel):
    """Why a job failed."""

    code: str | None
    message: str | None


class ImagePublic(BaseModel):
    """A published output image."""

    index: int
    url: str
    width: int
    height: int


class JobPublic(BaseModel):
    """A job as clients see it."""

    id: str
    object: Literal["job"] = "job"
    kind: str
    status: str
    stage: str | None
    progress: float
    progress_step: int | None
    progress_total: int | None
    prompt: str
    n: int
    size: str
    seed: int
    sampler: str
    steps: StepsPublic
    prior_guidance: float
    decoder_guidance: float
    attempt: int
    error: JobError | None
    status_reason: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    images: list[ImagePublic]


class JobsPublic(BaseModel):
    """One page of jobs, newest first."""

    object: Literal["list"] = "list"
    data: list[JobPublic]
    next_cursor: str | None
    has_more: bool


def image_url(base_url: str, job_id: str, index: int) -> str:
    """Where a client fetches image `index` of a job."""
    return f"{base_url.rstrip('/')}/v1/jobs/{job_id}/images/{index}"


def job_public(job: Job, images: list[JobImage], base_url: str) -> JobPublic:
    """The client's view of a job row and its published images."""
    active = job.status in ("prior", "decoder", "upsampler")
    failed = job.error_code is not None or job.error_message is not None
    return JobPublic(
        id=job.id,
        kind=job.kind,
        status=job.status,
        stage=job.status if active else job.progress_stage,
        progress=job.progress,
        progress_step=job.progress_step,
        progress_total=job.progress_total,
        prompt=job.prompt,
        n=job.n,
        size=job.size,
        seed=job.seed,
        sampler=job.sampler,
        steps=StepsPublic(
            prior=job.steps_prior, decoder=job.steps_decoder, upsampler=job.steps_upsampler
        ),
        prior_guidance=job.prior_guidance,
        decoder_guidance=job.decoder_guidance,
        attempt=job.attempt,
        error=JobError(code=job.error_code, message=job.error_message) if failed else None,
        status_reason=job.status_reason,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        images=[
            ImagePublic(
                index=image.index,
                url=image_url(base_url, job.id, image.index),
                width=image.width,
                height=image.height,
            )
            for image in images
        ],
    )
