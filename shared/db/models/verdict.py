"""The moderation_verdicts table: one checker's decision on a prompt or image (append-only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import ID_LENGTH, Base, created_column, id_column


class ModerationVerdict(Base):
    """stage prompt|input_image|output_image; decision allow|hold|block."""

    __tablename__ = "moderation_verdicts"

    id: Mapped[str] = id_column()
    job_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("jobs.id"), index=True)
    stage: Mapped[str] = mapped_column(String(16))
    checker: Mapped[str] = mapped_column(String(64))
    checker_version: Mapped[str] = mapped_column(String(64))
    policy_version: Mapped[str] = mapped_column(String(64))
    scores: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    decision: Mapped[str] = mapped_column(String(8))
    matched_terms: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = created_column()
