"""The stage_attempts table: one row per stage run by a worker, kept for diagnosis and metrics."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import ID_LENGTH, Base, UTCDateTime, created_column, id_column


class StageAttempt(Base):
    """A stage (prior | decoder | upsampler) run; status running|succeeded|failed|lost|cancelled."""

    __tablename__ = "stage_attempts"

    id: Mapped[str] = id_column()
    job_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    stage: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = created_column()
    # Indexed for the fleet view's recent throughput (attempts finished in the last minutes).
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    error: Mapped[str | None] = mapped_column(Text)
