"""Admin moderation schemas: held and rejected jobs with their verdicts and reviews."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.jobs import JobPublic
from shared.db.models import ModerationReview, ModerationVerdict


class VerdictPublic(BaseModel):
    """One ledger row: which check, under which policy, with which scores, decided what."""

    id: str
    stage: str
    checker: str
    checker_version: str
    policy_version: str
    decision: str
    scores: dict[str, Any]
    thresholds: dict[str, Any]
    matched_terms: list[Any]
    created_at: datetime


class ReviewPublic(BaseModel):
    """One reviewer decision."""

    id: str
    action: str
    reason: str
    reviewer: str
    created_at: datetime


class ModeratedJobPublic(BaseModel):
    """A job that moderation held or rejected, with everything needed to review it."""

    object: Literal["moderated_job"] = "moderated_job"
    job: JobPublic
    verdicts: list[VerdictPublic]
    reviews: list[ReviewPublic]


class ModeratedJobsPublic(BaseModel):
    """Held and rejected jobs, newest first."""

    object: Literal["list"] = "list"
    data: list[ModeratedJobPublic]


class ReviewCreate(BaseModel):
    """A reviewer's reason for releasing or confirming a job."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)
    reviewer: str = Field(default="admin", min_length=1, max_length=128)


class ReviewResult(ModeratedJobPublic):
    """A moderated job after a review, and how many images the review published."""

    published_images: int
    requeued: bool


def verdict_public(row: ModerationVerdict) -> VerdictPublic:
    """The reviewer's view of a verdict row."""
    return VerdictPublic(
        id=row.id, stage=row.stage, checker=row.checker, checker_version=row.checker_version,
        policy_version=row.policy_version, decision=row.decision, scores=row.scores,
        thresholds=row.thresholds, matched_terms=row.matched_terms, created_at=row.created_at,
    )  # fmt: skip


def review_public(row: ModerationReview) -> ReviewPublic:
    """The reviewer's view of a review row."""
    return ReviewPublic(
        id=row.id, action=row.action, reason=row.reason, reviewer=row.reviewer,
        created_at=row.created_at,
    )  # fmt: skip
