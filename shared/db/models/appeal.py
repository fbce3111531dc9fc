"""The moderation_appeals table: a key's appeal of a held or rejected job (one per job)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, backref, mapped_column, relationship

from shared.db.base import ID_LENGTH, Base, UTCDateTime, created_column, id_column
from shared.db.models.job import Job


class ModerationAppeal(Base):
    """status open|upheld|denied; the decision itself is a moderation_reviews row."""

    __tablename__ = "moderation_appeals"

    id: Mapped[str] = id_column()
    job_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("jobs.id"), unique=True)
    api_key_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("api_keys.id"))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    created_at: Mapped[datetime] = created_column()
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    review_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("moderation_reviews.id")
    )
    # `job.appeal` (lazy): the public job object shows the appeal's state.
    job: Mapped[Job] = relationship(backref=backref("appeal", uselist=False, lazy="select"))
