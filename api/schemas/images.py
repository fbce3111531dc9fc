"""OpenAI Images (DALL-E 2) wire schemas: the generations body, ImagesResponse, the model list."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.job_params import MAX_N, MAX_PROMPT_CHARS, Count, Size

ResponseFormat = Literal["url", "b64_json"]
# DALL-E 2 knows only "standard"; accepted so clients that send it keep working.
Quality = Literal["standard"]
MAX_USER_CHARS = 256
MAX_MODEL_CHARS = 256


class ImageGenerate(BaseModel):
    """POST /v1/images/generations. Ranges (n, size, prompt length) come from the settings."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        max_length=MAX_PROMPT_CHARS,
        description="What to draw; at most limits.max_prompt_chars characters.",
    )
    model: str | None = Field(
        default=None,
        max_length=MAX_MODEL_CHARS,
        description="dall-e-2 or a served family's name (GET /v1/models); absent: the default.",
    )
    n: Count | None = Field(
        default=None, ge=1, le=MAX_N, description="How many images (1 to limits.max_n)."
    )
    size: Size | None = Field(
        default=None,
        description="One of limits.sizes; absent: the family's native size (GET /v1/models).",
    )
    response_format: ResponseFormat | None = Field(
        default=None, description="url (default; signed, expiring) or b64_json."
    )
    quality: Quality | None = None
    user: str | None = Field(
        default=None, max_length=MAX_USER_CHARS, description="Your end-user's id (logged)."
    )
    # Our extension: signed webhook deliveries of the job's events (as on POST /v1/jobs).
    webhook_url: str | None = Field(default=None, max_length=2048)
    webhook_events: list[Literal["started", "progress", "completed"]] | None = None


class ImageURL(BaseModel):
    """An image as a signed URL that expires after UNCLIP_IMAGE_URL_TTL_S."""

    url: str


class ImageB64(BaseModel):
    """An image as base64-encoded PNG bytes."""

    b64_json: str


class ImagesResponse(BaseModel):
    """What all three image endpoints answer when the job has finished."""

    created: int = Field(description="Unix seconds when the job was created.")
    data: list[ImageURL | ImageB64]


class ModelPublic(BaseModel):
    """A model family the API serves, in OpenAI's model shape."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelsPublic(BaseModel):
    """GET /v1/models."""

    object: Literal["list"] = "list"
    data: list[ModelPublic]
