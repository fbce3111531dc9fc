"""The stage_outbox table: stage messages recorded with the transaction that makes them due.

A row is written in the same transaction that completes a stage (or releases a claim for a
retry), published after the commit and then marked published. A row still unpublished after
its `next_attempt_at` is found and published by the sweeper (shared/sweeper.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import ID_LENGTH, Base, UTCDateTime, created_column, id_column


class OutboxMessage(Base):
    """One render.<stage> message for a job; `reason` says why it was recorded."""

    __tablename__ = "stage_outbox"
    __table_args__ = (Index("ix_stage_outbox_pending", "published_at", "next_attempt_at"),)

    id: Mapped[str] = id_column()
    job_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    stage: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer)  # the job's attempt counter when recorded
    reason: Mapped[str] = mapped_column(String(32))  # next_stage | retry | handed_back | swept
    created_at: Mapped[datetime] = created_column()
    # When the message should be delivered: now, or later for a retry's backoff.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    publish_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
