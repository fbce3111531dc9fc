"""/v1/images/*: OpenAI's DALL-E 2 wire, served by the same jobs, stages and moderation.

Each request becomes one job through the same check, moderation and submission path as
POST /v1/jobs, then waits for it (sync) up to settings.sync_timeout_s and answers an
ImagesResponse; `Prefer: respond-async` answers 202 with the job at once instead.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Form, Header, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from api.deps import PrincipalDep, QueueDep, SessionFactoryDep, SettingsDep, StorageDep
from api.errors import error_response
from api.job_request import check_job_create
from api.moderation import screen_prompt
from api.rate_limits import enforce_create_rate
from api.schemas.errors import ErrorBody
from api.schemas.images import (
    MAX_MODEL_CHARS,
    MAX_USER_CHARS,
    ImageB64,
    ImageGenerate,
    ImagesResponse,
    ImageURL,
    ResponseFormat,
)
from api.schemas.jobs import JobCreate, JobPublic
from api.served_families import resolve_model
from api.shutdown import shutting_down
from api.submission import request_fingerprint, submit_job
from api.sync_wait import JobOutcome, wait_for_job
from api.uploads import check_upload_size, sniff_image
from shared.errors import InvalidInput
from shared.image_urls import signed_image_url
from shared.job_params import MAX_N, MAX_PROMPT_CHARS, Kind, Size
from shared.queue.dispatch import StageQueue
from shared.settings import Settings
from shared.storage.base import Storage

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["openai"])

JOB_ID_HEADER = "x-unclip-job-id"
# What OpenAI answers for an edit image with no alpha channel and no mask.
EDIT_IMAGE_MODES = ["RGBA", "LA", "L"]
_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503, 504)
# Requests per minute per key, as on POST /v1/jobs (429 with Retry-After over it).
CREATE_RATE = [Depends(enforce_create_rate)]
RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": JobPublic, "description": "Prefer: respond-async: the job, at once."},
    **{status: {"model": ErrorBody} for status in _ERRORS},
}


@dataclass(frozen=True)
class ImageAsk:
    """What one of the three endpoints was asked, before the common job check."""

    kind: Kind
    prompt: str | None
    n: int | None
    size: str | None
    model: str | None
    response_format: ResponseFormat
    user: str | None
    # The fields as the client sent them (uploads aside): the Idempotency-Key fingerprint.
    sent: dict[str, object] = field(default_factory=dict)
    webhook_url: str | None = None
    webhook_events: list[str] | None = None


@dataclass(frozen=True)
class Parts:
    """The app parts a request uses (FastAPI dependencies, bundled)."""

    settings: Settings
    factory: sessionmaker[Session]
    storage: Storage
    queue: StageQueue
    principal: Principal


def wants_async(prefer: str | None) -> bool:
    """True when a Prefer header (RFC 7240) holds the respond-async preference."""
    if not prefer:
        return False
    tokens = (part.split(";")[0].split("=")[0].strip().lower() for part in prefer.split(","))
    return "respond-async" in tokens


def _job_create(ask: ImageAsk) -> JobCreate:
    fields = {"kind": ask.kind, "prompt": ask.prompt, "n": ask.n or 1, "size": ask.size,
              "webhook_url": ask.webhook_url, "webhook_events": ask.webhook_events}
    try:
        return JobCreate.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        message = f"{param}: {first['msg']} (got {first.get('input')!r})"
        raise InvalidInput(message, param=param) from exc


async def _read_upload(upload: UploadFile, name: str, settings: Settings) -> bytes:
    # One byte past the limit is enough to refuse it, whatever the part claims.
    data = await upload.read(settings.limits.max_upload_bytes + 1)
    check_upload_size(data, param=name, limits=settings.limits)
    return data


def _check_edit_image(image: bytes, settings: Settings) -> None:
    """Without a mask the image's alpha is the mask: refuse an image that has none."""
    sniffed = sniff_image(image, param="image", limits=settings.limits)
    if not sniffed.has_alpha and sniffed.mode not in EDIT_IMAGE_MODES:
        raise InvalidInput(
            f"Invalid input image - format must be in {EDIT_IMAGE_MODES}, got {sniffed.mode}.",
            param="image",
            code="invalid_image_format",
        )


def _job_headers(job_id: str) -> dict[str, str]:
    # x-should-retry: false: the job goes on, so a client retry would only start another.
    return {JOB_ID_HEADER: job_id, "x-should-retry": "false"}


def _outcome_error(
    outcome: JobOutcome, timeout_s: float, *, stopping: bool = False
) -> JSONResponse:
    """The error answer of a job that did not succeed (or did not finish in time, or before
    this server began to shut down)."""
    job_id, headers = outcome.job_id, _job_headers(outcome.job_id)
    if outcome.status == "rejected":
        reason = outcome.status_reason or outcome.error_message or "moderation"
        message = (
            f"Your request was rejected by the content policy ({reason}); job {job_id} is "
            "recorded as rejected. Change the prompt or image"
        )
        return error_response(400, message, code="content_policy_violation", headers=headers)
    if outcome.status == "failed":
        code = outcome.error_code or "job_failed"
        status = 400 if code == "invalid_input" else 500
        message = f"job {job_id} failed ({code}): {outcome.error_message or 'no message'}"
        return error_response(status, message, code=code, headers=headers)
    if outcome.status == "cancelled":
        message = f"job {job_id} was cancelled before it finished; submit a new request"
        return error_response(409, message, code="job_cancelled", headers=headers)
    held = " (held for moderation review)" if outcome.status == "held" else ""
    when = "before this API server began to shut down" if stopping else f"within {timeout_s:g} s"
    message = (
        f"job {job_id} did not finish {when} (status {outcome.status}{held}); "
        f"it goes on: poll GET /v1/jobs/{job_id} for its images rather than resubmitting"
    )
    return error_response(504, message, code="timeout", headers=headers)


def _image_data(
    outcome: JobOutcome, response_format: ResponseFormat, settings: Settings, storage: Storage
) -> list[ImageURL | ImageB64]:
    if response_format == "url":
        return [
            ImageURL(url=signed_image_url(settings, outcome.job_id, index))
            for index, _ in outcome.images
        ]
    return [
        ImageB64(b64_json=base64.b64encode(storage.get_bytes(key)).decode("ascii"))
        for _, key in outcome.images
    ]


async def _serve(
    request: Request,
    parts: Parts,
    ask: ImageAsk,
    uploads: dict[str, bytes],
    prefer: str | None,
    idempotency_key: str | None,
) -> Response:
    settings = parts.settings
    resolve_model(settings, ask.model)
    job_in = _job_create(ask)
    if ask.kind == "edit" and "mask" not in uploads:
        await run_in_threadpool(_check_edit_image, uploads["image"], settings)
    checked = await run_in_threadpool(check_job_create, job_in, uploads, settings)
    api_key_id = parts.principal.api_key_id
    await run_in_threadpool(screen_prompt, parts.factory, settings, checked, api_key_id)
    fingerprint = request_fingerprint(request.url.path, ask.sent, uploads)
    public, _ = await run_in_threadpool(
        partial(
            submit_job, parts.factory, parts.storage, parts.queue, checked,
            principal=parts.principal, idempotency_key=idempotency_key,
            fingerprint=fingerprint, settings=settings,
        )
    )  # fmt: skip
    if ask.user is not None:
        logger.info("images %s job %s for end-user %r", ask.kind, public.id, ask.user)
    if wants_async(prefer):
        headers = {"Location": f"/v1/jobs/{public.id}", "Preference-Applied": "respond-async"}
        return JSONResponse(public.model_dump(mode="json"), status_code=202, headers=headers)
    async def stop_waiting() -> bool:  # the client left, or this server is shutting down
        return shutting_down(request) or await request.is_disconnected()

    outcome = await wait_for_job(
        parts.factory, public.id, settings.sync_timeout_s, gone=stop_waiting
    )
    if outcome.status != "succeeded":
        return _outcome_error(outcome, settings.sync_timeout_s, stopping=shutting_down(request))
    data = await run_in_threadpool(
        _image_data, outcome, ask.response_format, settings, parts.storage
    )
    body = ImagesResponse(created=int(outcome.created_at.timestamp()), data=data)
    return JSONResponse(body.model_dump(mode="json"), headers={JOB_ID_HEADER: public.id})


PreferHeader = Annotated[
    str | None,
    Header(max_length=1024, description="`respond-async`: answer 202 with the job at once."),
]
IdempotencyHeader = Annotated[str | None, Header(min_length=1, max_length=255)]


@router.post(
    "/images/generations",
    response_model=ImagesResponse,
    responses=RESPONSES,
    dependencies=CREATE_RATE,
)
async def create_image(
    request: Request,
    body: Annotated[ImageGenerate, Body()],
    settings: SettingsDep,
    factory: SessionFactoryDep,
    storage: StorageDep,
    queue: QueueDep,
    principal: PrincipalDep,
    prefer: PreferHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Images from a prompt (OpenAI's images.generate)."""
    ask = ImageAsk(
        kind="generate", prompt=body.prompt, n=body.n, size=body.size, model=body.model,
        response_format=body.response_format or "url", user=body.user,
        sent=body.model_dump(exclude_unset=True),
        webhook_url=body.webhook_url,
        webhook_events=None if body.webhook_events is None else list(body.webhook_events),
    )  # fmt: skip
    parts = Parts(settings, factory, storage, queue, principal)
    return await _serve(request, parts, ask, {}, prefer, idempotency_key)


def _sent(**fields: object) -> dict[str, object]:
    return {name: value for name, value in fields.items() if value is not None}


ModelForm = Annotated[str | None, Form(max_length=MAX_MODEL_CHARS)]
NForm = Annotated[int | None, Form(ge=1, le=MAX_N)]
SizeForm = Annotated[Size | None, Form()]
FormatForm = Annotated[ResponseFormat | None, Form()]
UserForm = Annotated[str | None, Form(max_length=MAX_USER_CHARS)]
WebhookForm = Annotated[str | None, Form(max_length=2048)]
# Comma-separated in a form: any of started, progress, completed.
WebhookEventsForm = Annotated[str | None, Form(max_length=64)]


def _events(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


@router.post(
    "/images/edits",
    response_model=ImagesResponse,
    responses=RESPONSES,
    dependencies=CREATE_RATE,
)
async def create_image_edit(
    request: Request,
    image: Annotated[UploadFile, File(description="Square PNG; its alpha = 0 marks the edit.")],
    prompt: Annotated[str, Form(max_length=MAX_PROMPT_CHARS)],
    settings: SettingsDep,
    factory: SessionFactoryDep,
    storage: StorageDep,
    queue: QueueDep,
    principal: PrincipalDep,
    mask: Annotated[UploadFile | None, File(description="Alpha = 0 marks the edit.")] = None,
    model: ModelForm = None,
    n: NForm = None,
    size: SizeForm = None,
    response_format: FormatForm = None,
    user: UserForm = None,
    webhook_url: WebhookForm = None,
    webhook_events: WebhookEventsForm = None,
    prefer: PreferHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Repaint the transparent area of an image, or the mask's (OpenAI's images.edit)."""
    uploads = {"image": await _read_upload(image, "image", settings)}
    if mask is not None:
        uploads["mask"] = await _read_upload(mask, "mask", settings)
    ask = ImageAsk(
        kind="edit", prompt=prompt, n=n, size=size, model=model,
        response_format=response_format or "url", user=user,
        sent=_sent(prompt=prompt, model=model, n=n, size=size,
                   response_format=response_format, user=user, webhook_url=webhook_url,
                   webhook_events=webhook_events),
        webhook_url=webhook_url, webhook_events=_events(webhook_events),
    )  # fmt: skip
    parts = Parts(settings, factory, storage, queue, principal)
    return await _serve(request, parts, ask, uploads, prefer, idempotency_key)


@router.post(
    "/images/variations",
    response_model=ImagesResponse,
    responses=RESPONSES,
    dependencies=CREATE_RATE,
)
async def create_image_variation(
    request: Request,
    image: Annotated[UploadFile, File(description="Square PNG, JPEG or WebP.")],
    settings: SettingsDep,
    factory: SessionFactoryDep,
    storage: StorageDep,
    queue: QueueDep,
    principal: PrincipalDep,
    model: ModelForm = None,
    n: NForm = None,
    size: SizeForm = None,
    response_format: FormatForm = None,
    user: UserForm = None,
    webhook_url: WebhookForm = None,
    webhook_events: WebhookEventsForm = None,
    prefer: PreferHeader = None,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Variations of an image (OpenAI's images.create_variation)."""
    uploads = {"image": await _read_upload(image, "image", settings)}
    ask = ImageAsk(
        kind="variation", prompt=None, n=n, size=size, model=model,
        response_format=response_format or "url", user=user,
        sent=_sent(model=model, n=n, size=size, response_format=response_format, user=user,
                   webhook_url=webhook_url, webhook_events=webhook_events),
        webhook_url=webhook_url, webhook_events=_events(webhook_events),
    )  # fmt: skip
    parts = Parts(settings, factory, storage, queue, principal)
    return await _serve(request, parts, ask, uploads, prefer, idempotency_key)
