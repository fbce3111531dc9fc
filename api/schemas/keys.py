"""API key schemas: KeyCreate (request), KeyPublic / KeysPublic, and KeyCreated (secret once)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from shared.db.models import ApiKey
from shared.db.models.api_key import NAME_LENGTH
from shared.job_params import MAX_DB_INT


class KeyCreate(BaseModel):
    """A new key: its name, and limits (left out: the server's defaults)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_LENGTH)
    # Strict: "yes" or true is not a number of requests, and "yes" does not make an admin.
    rpm: StrictInt | None = Field(
        default=None, ge=1, le=MAX_DB_INT, description="create requests per minute"
    )
    max_active_jobs: StrictInt | None = Field(
        default=None, ge=1, le=MAX_DB_INT, description="queued + running"
    )
    is_admin: StrictBool = False


class KeyPublic(BaseModel):
    """A key as listed: never its secret or its hash."""

    id: str
    name: str
    prefix: str
    is_admin: bool
    rpm: int | None
    max_active_jobs: int | None
    created_at: datetime
    revoked_at: datetime | None
    suspended_at: datetime | None
    suspended_reason: str | None


class KeyCreated(KeyPublic):
    """A key just created, with its secret: shown this once, stored only as a keyed hash."""

    key: str


class KeysPublic(BaseModel):
    """Every key, oldest first."""

    data: list[KeyPublic]


def key_public(row: ApiKey) -> KeyPublic:
    return KeyPublic(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        is_admin=row.is_admin,
        rpm=row.rpm,
        max_active_jobs=row.max_active_jobs,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        suspended_at=row.suspended_at,
        suspended_reason=row.suspended_reason,
    )
