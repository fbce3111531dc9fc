"""Turn a POST /v1/jobs body (JSON or multipart) into a checked JobRequest, or a named 4xx."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

from api.schemas.jobs import KINDS, JobCreate
from api.uploads import (
    UploadedImage,
    body_limit,
    check_mask,
    check_square,
    check_upload_size,
    decode_base64,
    read_body,
    sniff_image,
)
from shared.db.jobs import NewJob
from shared.errors import InvalidInput, UnsupportedMedia
from shared.settings import Limits

MAX_SEED = 2**32 - 1
FILE_FIELDS = ("image", "mask")
FORM_STEP_FIELDS = {
    "steps_prior": "prior",
    "steps_decoder": "decoder",
    "steps_upsampler": "upsampler",
}


@dataclass(frozen=True)
class JobRequest:
    """A request whose every value is within limits, with defaults filled in."""

    kind: str
    prompt: str
    n: int
    size: str
    seed: int
    sampler: str
    steps_prior: int
    steps_decoder: int
    steps_upsampler: int
    prior_guidance: float
    decoder_guidance: float
    image: UploadedImage | None
    mask: UploadedImage | None

    def new_job(
        self, *, input_image_key: str | None, mask_key: str | None, idempotency_key: str | None
    ) -> NewJob:
        """The row to insert, once the inputs are stored under the given keys."""
        return NewJob(
            kind=self.kind,
            prompt=self.prompt,
            n=self.n,
            size=self.size,
            seed=self.seed,
            sampler=self.sampler,
            steps_prior=self.steps_prior,
            steps_decoder=self.steps_decoder,
            steps_upsampler=self.steps_upsampler,
            prior_guidance=self.prior_guidance,
            decoder_guidance=self.decoder_guidance,
            input_image_key=input_image_key,
            mask_key=mask_key,
            idempotency_key=idempotency_key,
        )


def _validation_error(exc: ValidationError) -> InvalidInput:
    first = exc.errors()[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(JobCreate.model_fields)
        return InvalidInput(f"unknown field {param!r}; allowed fields: {allowed}", param=param)
    return InvalidInput(f"{param}: {first['msg']} (got {first.get('input')!r})", param=param)


def _model(fields: dict[str, Any]) -> JobCreate:
    try:
        return JobCreate.model_validate(fields)
    except ValidationError as exc:
        raise _validation_error(exc) from exc


async def _parse_json(request: Request, limits: Limits) -> tuple[JobCreate, dict[str, bytes]]:
    body = await read_body(request, body_limit(limits, base64_encoded=True))
    try:
        fields = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON ({exc})", param="body") from exc
    if not isinstance(fields, dict):
        raise InvalidInput(
            f"body must be a JSON object of job fields, got {type(fields).__name__}", param="body"
        )
    job_in = _model(fields)
    uploads = {
        name: decode_base64(text, param=name, limits=limits)
        for name, text in (("image", job_in.image), ("mask", job_in.mask))
        if text is not None
    }
    return job_in, uploads


def _replay(request: Request, body: bytes) -> Request:
    """A request whose body is `body`, already read under the cap."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


async def _parse_multipart(request: Request, limits: Limits) -> tuple[JobCreate, dict[str, bytes]]:
    body = await read_body(request, body_limit(limits, base64_encoded=False))
    try:
        form = await _replay(request, body).form(max_files=len(FILE_FIELDS), max_fields=32)
    except Exception as exc:  # the multipart parser raises several types for malformed bodies
        raise InvalidInput(f"body is not valid multipart/form-data ({exc})", param="body") from exc
    fields: dict[str, Any] = {}
    uploads: dict[str, bytes] = {}
    for name, value in form.multi_items():
        if name in fields or name in uploads:
            raise InvalidInput(f"field {name!r} is given more than once", param=name)
        if isinstance(value, UploadFile):
            if name not in FILE_FIELDS:
                raise InvalidInput(
                    f"file part {name!r} is not expected; files go in {list(FILE_FIELDS)}",
                    param=name,
                )
            uploads[name] = await value.read()
            check_upload_size(uploads[name], param=name, limits=limits)
        elif name in FORM_STEP_FIELDS:
            fields.setdefault("steps", {})[FORM_STEP_FIELDS[name]] = value
        elif name in FILE_FIELDS:
            uploads[name] = decode_base64(value, param=name, limits=limits)
        else:
            fields[name] = value
    await form.close()
    return _model(fields), uploads


async def parse_job_create(request: Request, limits: Limits) -> tuple[JobCreate, dict[str, bytes]]:
    """Read the body as JSON or multipart/form-data; the raw image and mask bytes beside it."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return await _parse_json(request, limits)
    if content_type == "multipart/form-data":
        return await _parse_multipart(request, limits)
    raise UnsupportedMedia(
        f"content type {content_type or '(none)'!r} is not accepted; send application/json or "
        "multipart/form-data",
        param="content-type",
    )


def _in_range(param: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise InvalidInput(f"{param}={value} is out of range; allowed {low} to {high}", param=param)


def _prompt(job_in: JobCreate, limits: Limits) -> str:
    prompt = job_in.prompt or ""
    if job_in.kind in ("generate", "edit") and not prompt.strip():
        raise InvalidInput(
            f"prompt is empty; kind={job_in.kind} needs a prompt of 1 to "
            f"{limits.max_prompt_chars} characters",
            param="prompt",
        )
    if len(prompt) > limits.max_prompt_chars:
        raise InvalidInput(
            f"prompt has {len(prompt)} characters; at most {limits.max_prompt_chars} are allowed",
            param="prompt",
        )
    return prompt


def _choice(param: str, value: str | None, allowed: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if value not in allowed:
        raise InvalidInput(
            f"{param} {value!r} is not allowed; use one of {list(allowed)}", param=param
        )
    return value


def _steps(job_in: JobCreate, limits: Limits) -> tuple[int, int, int]:
    given = job_in.steps
    result = []
    for stage in ("prior", "decoder", "upsampler"):
        value = getattr(given, stage) if given is not None else None
        if value is None:
            value = getattr(limits.steps, f"default_{stage}")
        _in_range(f"steps.{stage}", value, 1, getattr(limits.steps, f"max_{stage}"))
        result.append(int(value))
    return result[0], result[1], result[2]


def _guidance(param: str, value: float | None, low: float, high: float, default: float) -> float:
    if value is None:
        return default
    _in_range(param, value, low, high)
    return value


def _images(
    kind: str, uploads: dict[str, bytes], limits: Limits
) -> tuple[UploadedImage | None, UploadedImage | None]:
    if kind == "generate":
        if uploads:
            raise InvalidInput(
                f"kind=generate takes no {' or '.join(sorted(uploads))}; use kind=variation "
                "(image) or kind=edit (image and mask)",
                param=sorted(uploads)[0],
            )
        return None, None
    if "image" not in uploads:
        raise InvalidInput(f"kind={kind} needs an image (PNG, JPEG or WEBP)", param="image")
    if kind == "variation" and "mask" in uploads:
        raise InvalidInput("kind=variation takes no mask; use kind=edit", param="mask")
    image = sniff_image(uploads["image"], param="image", limits=limits)
    check_square(image, param="image")
    mask = None
    if "mask" in uploads:
        mask = sniff_image(uploads["mask"], param="mask", limits=limits)
    if kind == "edit":
        check_mask(image, mask)
    return image, mask


def check_job_create(job_in: JobCreate, uploads: dict[str, bytes], limits: Limits) -> JobRequest:
    """Every value within limits (400/413/415/422 naming it otherwise), defaults filled."""
    kind = _choice("kind", job_in.kind, KINDS, "generate")
    prompt = _prompt(job_in, limits)
    _in_range("n", job_in.n, limits.min_n, limits.max_n)
    size = _choice("size", job_in.size, limits.sizes, limits.default_size)
    seed = job_in.seed if job_in.seed is not None else secrets.randbelow(MAX_SEED + 1)
    _in_range("seed", seed, 0, MAX_SEED)
    sampler = _choice("sampler", job_in.sampler, limits.samplers, limits.default_sampler)
    steps = _steps(job_in, limits)
    pg, dg = limits.prior_guidance, limits.decoder_guidance
    image, mask = _images(kind, uploads, limits)
    return JobRequest(
        kind=kind,
        prompt=prompt,
        n=job_in.n,
        size=size,
        seed=seed,
        sampler=sampler,
        steps_prior=steps[0],
        steps_decoder=steps[1],
        steps_upsampler=steps[2],
        prior_guidance=_guidance(
            "prior_guidance", job_in.prior_guidance, pg.min, pg.max, pg.default
        ),
        decoder_guidance=_guidance(
            "decoder_guidance", job_in.decoder_guidance, dg.min, dg.max, dg.default
        ),
        image=image,
        mask=mask,
    )
