"""Turn a POST /v1/jobs body (JSON or multipart) into a checked JobRequest, or a named 4xx."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

from api.embedding_request import EmbeddingRef, MixInput, check_embedding_fields
from api.schemas.jobs import (
    DELIVERY_FIELDS,
    EMBEDDING_FIELDS,
    FILE_FIELDS,
    FORM_STEP_FIELDS,
    JobCreate,
)
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
from shared.family_info import family_info
from shared.job_params import (
    KINDS,
    MAX_MIX,
    MAX_MIX_WEIGHT,
    MAX_SEED,
    MIN_MIX,
    STAGES,
    JobParams,
    Kind,
)
from shared.settings import Limits, Settings
from shared.storable import check_storable
from shared.webhooks.targets import (
    WEBHOOK_EVENTS,
    check_webhook_events,
    check_webhook_url,
    private_targets_allowed,
)


@dataclass(frozen=True)
class JobRequest:
    """A request whose every value is within limits, its seed drawn; None is left for what
    the client did not say (the worker fills it from the family's defaults)."""

    params: JobParams
    image: UploadedImage | None
    mask: UploadedImage | None
    native_size: str | None = None  # what the served family makes, when this host knows
    webhook_url: str | None = None  # checked: http(s), no private target unless allowed
    webhook_events: tuple[str, ...] = ("completed",)
    # Embedding-level inputs (api/embedding_request.py) and, for a replay, its original.
    embedding: EmbeddingRef | None = None
    mix: tuple[MixInput, ...] = ()
    replay_of: str | None = None
    replay_expect: dict[str, Any] | None = None

    @property
    def kind(self) -> Kind:
        return self.params.kind

    @property
    def prompt(self) -> str:
        return self.params.prompt or ""

    def new_job(
        self, *, input_image_key: str | None, mask_key: str | None,
        input_embedding_key: str | None = None, mix: list[dict[str, Any]] | None = None,
    ) -> NewJob:  # fmt: skip
        """The row to insert, once the inputs are stored under the given keys."""
        return NewJob(
            params=self.params,
            native_size=self.native_size,
            input_image_key=input_image_key,
            mask_key=mask_key,
            input_embedding_id=None if self.embedding is None else self.embedding.embedding_id,
            input_embedding_key=input_embedding_key,
            mix=mix,
            replay_of=self.replay_of,
            replay_expect=self.replay_expect,
            webhook_url=self.webhook_url,
            webhook_events=",".join(self.webhook_events) if self.webhook_url else None,
        )


def _allowed(param: str, limits: Limits) -> str | None:
    """What `param` may be under these limits, in words, for a message."""
    stage = param.removeprefix("steps.")
    ranges: dict[str, tuple[float, float]] = {
        "n": (limits.min_n, limits.max_n),
        "seed": (0, MAX_SEED),
        "prior_guidance": (limits.prior_guidance.min, limits.prior_guidance.max),
        "decoder_guidance": (limits.decoder_guidance.min, limits.decoder_guidance.max),
    }
    if param.startswith("steps.") and hasattr(limits.steps, f"max_{stage}"):
        ranges[param] = (1, getattr(limits.steps, f"max_{stage}"))
    if param in ranges:
        low, high = ranges[param]
        return f"{low} to {high}"
    if param == "mix":
        return f"{MIN_MIX} to {MAX_MIX} entries"
    if param.startswith("mix.") and param.endswith(".weight"):
        return f"a number > 0 and <= {MAX_MIX_WEIGHT}"
    if param.startswith("webhook_events."):
        return f"one or more of {list(WEBHOOK_EVENTS)}"
    options = {"kind": KINDS, "size": limits.sizes, "sampler": limits.samplers}
    return f"one of {list(options[param])}" if param in options else None


def _message(first: ErrorDetails, param: str | None, limits: Limits) -> str:
    value = repr(first.get("input"))
    value = value if len(value) <= 200 else f"{value[:200]}..."
    allowed = _allowed(param or "", limits)
    if param and first["type"] in ("literal_error", "enum"):
        return f"{param} {value} is not allowed; use {allowed}"
    if param == "prompt" and first["type"] == "string_too_long":
        length = len(str(first.get("input")))
        return f"prompt has {length} characters; at most {limits.max_prompt_chars} are allowed"
    bound = ("greater_than_equal", "less_than_equal", "greater_than", "less_than")
    if param and allowed and first["type"] in bound:
        return f"{param}={value} is out of range; allowed {allowed}"
    hint = f"; allowed {allowed}" if allowed else ""
    return f"{param}: {first['msg']} (got {value}){hint}"


def validation_error(exc: ValidationError, limits: Limits) -> InvalidInput:
    """A JobCreate ValidationError as a 400 naming the field, the value and what is allowed."""
    first = exc.errors()[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(JobCreate.model_fields)
        return InvalidInput(f"unknown field {param!r}; allowed fields: {allowed}", param=param)
    return InvalidInput(_message(first, param, limits), param=param)


def _model(fields: dict[str, Any], limits: Limits) -> JobCreate:
    try:
        return JobCreate.model_validate(fields)
    except ValidationError as exc:
        raise validation_error(exc, limits) from exc


async def _parse_json(request: Request, limits: Limits) -> tuple[JobCreate, dict[str, bytes]]:
    body = await read_body(request, body_limit(limits, base64_encoded=True))
    try:
        fields = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON ({exc})", param="body") from exc
    except RecursionError as exc:  # api/edge.py refuses deep bodies first; kept for direct use
        raise InvalidInput("the JSON body nests too deeply", param="body") from exc
    if not isinstance(fields, dict):
        raise InvalidInput(
            f"body must be a JSON object of job fields, got {type(fields).__name__}", param="body"
        )
    job_in = _model(fields, limits)
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
        elif name in FILE_FIELDS:
            uploads[name] = decode_base64(value, param=name, limits=limits)
        elif name in FORM_STEP_FIELDS:
            fields.setdefault("steps", {})[FORM_STEP_FIELDS[name]] = value
        elif name == "webhook_events":  # a form sends them comma-separated
            fields[name] = [part.strip() for part in value.split(",") if part.strip()]
        else:
            fields[check_storable(name, param=name)] = check_storable(value, param=name)
    await form.close()
    return _model(fields, limits), uploads


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
    prompt = check_storable(job_in.prompt or "", param="prompt")
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


def _choice(param: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise InvalidInput(
            f"{param} {value!r} is not allowed; use one of {list(allowed)}", param=param
        )


def _check_ranges(job_in: JobCreate, limits: Limits) -> None:
    """The configured ranges, narrower than the schema's; None (the family's default) passes."""
    _in_range("n", job_in.n, limits.min_n, limits.max_n)
    _choice("size", job_in.size, limits.sizes)
    _choice("sampler", job_in.sampler, limits.samplers)
    for stage in STAGES:
        value = job_in.step(stage)
        if value is not None:
            _in_range(f"steps.{stage}", value, 1, getattr(limits.steps, f"max_{stage}"))
    for name in ("prior_guidance", "decoder_guidance"):
        value = getattr(job_in, name)
        bounds = getattr(limits, name)
        if value is not None:
            _in_range(name, value, bounds.min, bounds.max)


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


def check_job_create(
    job_in: JobCreate, uploads: dict[str, bytes], settings: Settings
) -> JobRequest:
    """Every value within the configured limits (400/413/415/422 naming it otherwise) and the
    seed drawn when absent; what the client left out stays None for the family to fill."""
    limits = settings.limits
    embedded = check_embedding_fields(job_in, uploads, limits)
    prompt = embedded.mix_prompt() if job_in.kind == "mix" else _prompt(job_in, limits)
    _check_ranges(job_in, limits)
    seed = job_in.seed if job_in.seed is not None else secrets.randbelow(MAX_SEED + 1)
    image, mask = (None, None) if embedded.replaces_uploads else _images(job_in.kind, uploads,
                                                                          limits)  # fmt: skip
    info = family_info(settings.family.expanduser().resolve())
    params = JobParams.model_validate(
        job_in.model_dump(exclude={"image", "mask", *DELIVERY_FIELDS, *EMBEDDING_FIELDS})
        | {"prompt": prompt, "seed": seed}
    )
    return JobRequest(
        params=params,
        image=image,
        mask=mask,
        native_size=None if info is None else info.native_size_for(params.size),
        embedding=embedded.embedding,
        mix=embedded.mix,
        **_webhook(job_in, settings),
    )


def _webhook(job_in: JobCreate, settings: Settings) -> dict[str, Any]:
    """The checked webhook_url and webhook_events of a request (none without a URL)."""
    if job_in.webhook_url is None:
        if job_in.webhook_events is not None:
            raise InvalidInput("webhook_events needs a webhook_url to send them to",
                               param="webhook_events")  # fmt: skip
        return {}
    allow = private_targets_allowed(settings)
    return {
        "webhook_url": check_webhook_url(job_in.webhook_url, allow_private=allow),
        "webhook_events": check_webhook_events(job_in.webhook_events),
    }
