"""Appeal schemas: a key's appeal of its held or rejected job, and an admin's decision."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.jobs import JobPublic
from shared.db.models import ModerationAction, ModerationAppeal


class AppealCreate(BaseModel):
    """Why the owner thinks moderation got it wrong."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class AppealPublic(BaseModel):
    """An appeal as its owner and admins see it."""

    id: str
    object: Literal["appeal"] = "appeal"
    job_id: str
    status: Literal["open", "upheld", "denied"]
    reason: str
    created_at: datetime
    decided_at: datetime | None


class AppealWithJob(AppealPublic):
    """An appeal with the job it is about (admin view)."""

    job: JobPublic


class AppealsPublic(BaseModel):
    """Appeals, oldest first."""

    object: Literal["list"] = "list"
    data: list[AppealWithJob]


class AppealDecide(BaseModel):
    """An admin's decision: uphold releases the job (publishing its images), deny confirms."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["uphold", "deny"]
    reason: str = Field(min_length=1, max_length=2000)
    reviewer: str = Field(default="admin", min_length=1, max_length=128)


class AppealDecided(AppealWithJob):
    """An appeal after its decision, and what the release did."""

    published_images: int
    requeued: bool


class UnsuspendKey(BaseModel):
    """Why an admin lifts a key's suspension."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)
    reviewer: str = Field(default="admin", min_length=1, max_length=128)


class ModerationActionPublic(BaseModel):
    """One enforcement row of a key."""

    id: str
    action: str
    job_id: str | None
    reason: str
    actor: str
    created_at: datetime


class KeyEnforcementPublic(BaseModel):
    """A key's suspension state and its enforcement history."""

    object: Literal["key_enforcement"] = "key_enforcement"
    key_id: str
    suspended_at: datetime | None
    suspended_reason: str | None
    actions: list[ModerationActionPublic]


def appeal_public(row: ModerationAppeal) -> AppealPublic:
    """The owner's view of an appeal."""
    return AppealPublic(
        id=row.id,
        job_id=row.job_id,
        status=row.status,  # type: ignore[arg-type]
        reason=row.reason,
        created_at=row.created_at,
        decided_at=row.decided_at,
    )


def action_public(row: ModerationAction) -> ModerationActionPublic:
    """An admin's view of an enforcement row."""
    return ModerationActionPublic(
        id=row.id,
        action=row.action,
        job_id=row.job_id,
        reason=row.reason,
        actor=row.actor,
        created_at=row.created_at,
    )
