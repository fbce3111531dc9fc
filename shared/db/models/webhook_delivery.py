"""The webhook_deliveries and webhook_attempts tables: the outbox of deliveries and their log.

A delivery is written in the same transaction as the job event it reports, and sent by the
dispatcher (shared/webhooks/dispatcher.py). Its id is the `webhook-id` of every attempt.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import ID_LENGTH, Base, UTCDateTime, created_column, id_column


class WebhookDelivery(Base):
    """One event to deliver to a job's webhook_url; status pending|sending|delivered|failed."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # msg_<uuid hex>
    job_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(String(64))  # the owning key's id (its signing secret)
    url: Mapped[str] = mapped_column(String(2048))
    event: Mapped[str] = mapped_column(String(16))  # started | progress | completed
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    # A sending row whose lease passed belongs to a dispatcher that died: it is due again.
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_column()
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebhookAttempt(Base):
    """One try of a delivery: when, the receiver's status code or the error, how long."""

    __tablename__ = "webhook_attempts"

    id: Mapped[str] = id_column()
    delivery_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = created_column()
    duration_ms: Mapped[int] = mapped_column(Integer)
