"""Job schemas: JobCreate (request), JobPublic and JobsPublic (responses)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas.embedding_fields import EmbeddingFields, embedding_fields, output_embedding_ids
from api.schemas.moderation import AppealState, ModerationPublic, appeal_state, moderation_public
from shared.db.models import Job, JobImage
from shared.db.models.embedding import Embedding
from shared.db.queue_position import QueueStanding
from shared.db.states import JobStatus
from shared.image_urls import signed_image_url
from shared.job_params import (
    EMBEDDING_ID_LENGTH,
    MAX_MIX,
    MIN_MIX,
    JobParams,
    Kind,
    MixEntry,
    ParamsUsed,
    Sampler,
    Size,
    StepsParams,
    native_as_size,
    params_from_row,
)
from shared.settings import Settings

WebhookEvent = Literal["started", "progress", "completed"]


class JobCreate(JobParams):
    """A render request: the job parameters, and the images as base64 strings.

    Ranges narrower than the schema's come from settings (api/job_request.py checks them).
    multipart/form-data carries the same fields, `image` / `mask` as file parts and the
    steps as steps_prior / steps_decoder / steps_upsampler.
    """

    image: str | None = Field(default=None, description="base64 (or a data: URL) of the image")
    mask: str | None = Field(default=None, description="base64 (or a data: URL) of the mask")
    webhook_url: str | None = Field(
        default=None, max_length=2048,
        description="signed deliveries (Standard Webhooks) of the job's events go here",
    )  # fmt: skip
    webhook_events: list[WebhookEvent] | None = Field(
        default=None, max_length=3, description="which of started, progress, completed "
        "(default: completed)",
    )  # fmt: skip
    # Embedding-level inputs (issue 15; api/embedding_request.py checks them).
    embedding_id: str | None = Field(
        default=None, max_length=EMBEDDING_ID_LENGTH,
        description="kind=variation: vary this stored embedding instead of an uploaded image",
    )  # fmt: skip
    mix: list[MixEntry] | None = Field(
        default=None, min_length=MIN_MIX, max_length=MAX_MIX,
        description="kind=mix: 2 to 4 weighted entries (JSON only), spherically mixed",
    )  # fmt: skip


# Create options that are not render parameters: they do not go into JobParams.
DELIVERY_FIELDS = frozenset({"webhook_url", "webhook_events"})
EMBEDDING_FIELDS = frozenset({"embedding_id", "mix"})


SCHEMA_REF = "#/components/schemas/{model}"
FORM_STEP_FIELDS = {f"steps_{stage}": stage for stage in StepsParams.model_fields}
FILE_FIELDS = ("image", "mask")


def job_create_form_schema() -> dict[str, Any]:
    """JobCreate as multipart/form-data: the same fields, steps flattened, images as files."""
    schema = JobCreate.model_json_schema(ref_template=SCHEMA_REF)
    steps = StepsParams.model_json_schema(ref_template=SCHEMA_REF)["properties"]
    properties = {k: v for k, v in schema["properties"].items() if k not in ("steps", "mix")}
    properties.update({form: steps[stage] for form, stage in FORM_STEP_FIELDS.items()})
    for name in FILE_FIELDS:
        properties[name] = {"type": "string", "format": "binary", "description": f"the {name}"}
    return {
        "title": "JobCreateForm",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }


def job_create_openapi() -> dict[str, Any]:
    """POST /v1/jobs reads its body by hand (JSON or multipart): this documents both."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": SCHEMA_REF.format(model="JobCreate")}},
                "multipart/form-data": {"schema": job_create_form_schema()},
            },
        }
    }


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
    embedding_id: str | None = Field(
        default=None, description="its CLIP image embedding (GET /v1/embeddings/{id})"
    )


class JobPublic(EmbeddingFields):
    """A job as clients see it: what it asked for (None: the family's default), what it ran
    with (`params_used`, once a worker started it) and whether its images are resized."""

    id: str
    object: Literal["job"] = "job"
    kind: Kind
    status: str
    stage: str | None
    progress: float
    progress_step: int | None
    progress_total: int | None
    prompt: str
    n: int
    size: Size | None
    seed: int
    sampler: Sampler | None
    steps: StepsParams
    prior_guidance: float | None
    decoder_guidance: float | None
    params_used: ParamsUsed | None
    native_size: str | None = Field(description="what the family makes, e.g. '64x64'")
    resized: bool = Field(description="true when the images are resized from native_size")
    attempt: int = Field(description="attempts of the current (or last) stage: 1 unless retried")
    # While the job waits in a stage queue (issue 15): jobs ahead of it, the estimated seconds
    # until it finishes, and whether a live worker serves its queues (if not, why not).
    queue_position: int | None = None
    eta_s: float | None = None
    servable: bool | None = None
    unservable_reason: str | None = None
    error: JobError | None
    status_reason: str | None
    # Moderation (H-moderation, api/schemas/moderation.py): category and stage of a hold or
    # block (never terms or thresholds), and the state of the job's appeal.
    moderation: ModerationPublic | None = None
    appeal: AppealState | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    images: list[ImagePublic]  # empty once the job is expired (its files are deleted)


class JobsPublic(BaseModel):
    """One page of jobs, newest first."""

    object: Literal["list"] = "list"
    data: list[JobPublic]
    next_cursor: str | None
    has_more: bool


def _native_and_resized(job: Job, used: ParamsUsed | None) -> tuple[str | None, bool]:
    if used is not None:
        return used.native_size, used.resized
    if job.native_size is None:
        return None, False
    size = job.size or native_as_size(job.native_size)
    return job.native_size, size != job.native_size


def job_public(
    job: Job, images: list[JobImage], settings: Settings, *,
    standing: QueueStanding | None = None, stage_attempts: int | None = None,
    embeddings: Sequence[Embedding] = (),
) -> JobPublic:
    """The client's view of a job row and its published images (signed, expiring URLs).

    `standing` (shared/db/queue_position.py) is given for a job waiting in a queue;
    `stage_attempts` counts the claims of its current stage (else the row's job-wide count).
    """
    active = job.status in ("prior", "decoder", "upsampler")
    stage = job.status if active else job.progress_stage
    counts_match = job.progress_stage == stage
    failed = job.error_code is not None or job.error_message is not None
    asked = params_from_row(job)
    used = None if job.params_used is None else ParamsUsed.model_validate(job.params_used)
    native_size, resized = _native_and_resized(job, used)
    embedding_ids = output_embedding_ids(embeddings)  # `embeddings`: shared/db/embeddings.py
    return JobPublic(
        **embedding_fields(job, embeddings),
        id=job.id,
        kind=asked.kind,
        status=job.status,
        stage=stage,
        progress=job.progress,
        # Step counts only of the stage shown: between stages the row still holds the last
        # stage's counts, which must not read as the next stage's.
        progress_step=job.progress_step if counts_match else None,
        progress_total=job.progress_total if counts_match else None,
        prompt=job.prompt,
        n=job.n,
        size=asked.size,
        seed=job.seed,
        sampler=asked.sampler,
        steps=asked.steps or StepsParams(),
        prior_guidance=asked.prior_guidance,
        decoder_guidance=asked.decoder_guidance,
        params_used=used,
        native_size=native_size,
        resized=resized,
        attempt=job.attempt if stage_attempts is None else stage_attempts,
        queue_position=standing.queue_position if standing else None,
        eta_s=standing.eta_s if standing else None,
        servable=standing.servable if standing else None,
        unservable_reason=standing.unservable_reason if standing else None,
        error=JobError(code=job.error_code, message=job.error_message) if failed else None,
        status_reason=job.status_reason,
        moderation=moderation_public(job.status_reason),
        appeal=appeal_state(job),
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        images=[
            ImagePublic(
                index=image.index,
                url=signed_image_url(settings, job.id, image.index),
                width=image.width,
                height=image.height,
                embedding_id=embedding_ids.get(image.index),
            )
            for image in images
            if job.status != JobStatus.expired.value  # its files are gone: no URL to offer
        ],
    )
