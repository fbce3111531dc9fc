"""The idempotency_records table: one Idempotency-Key per caller scope, and the job it made."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import ID_LENGTH, Base, UTCDateTime, created_column, id_column

SCOPE_LENGTH = 64
KEY_LENGTH = 255


class IdempotencyRecord(Base):
    """`scope` is the API key's id, or "local" for the keyless principal: never NULL, so the
    unique (scope, key) index applies to every request. `job_id` is NULL while the first
    request is still in flight; `fingerprint` is the SHA-256 of its canonical body."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        UniqueConstraint("scope", "key"),
        Index("ix_idempotency_records_expires_at", "expires_at"),
    )

    id: Mapped[str] = id_column()
    scope: Mapped[str] = mapped_column(String(SCOPE_LENGTH))
    key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    fingerprint: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("jobs.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = created_column()
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
