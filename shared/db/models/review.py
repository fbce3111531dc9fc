"""The moderation_reviews table: a reviewer's release or confirm of a held job (append-only)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import ID_LENGTH, Base, created_column, id_column


class ModerationReview(Base):
    """action release|confirm, with the reviewer and their reason."""

    __tablename__ = "moderation_reviews"

    id: Mapped[str] = id_column()
    job_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("jobs.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    reviewer: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = created_column()
