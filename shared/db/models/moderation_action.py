"""The moderation_actions table: what enforcement did to a key (append-only, in the ledger)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import ID_LENGTH, Base, created_column, id_column


class ModerationAction(Base):
    """action cancel_queued|suspend_key|unsuspend_key, by `actor`, for the key and the job."""

    __tablename__ = "moderation_actions"

    id: Mapped[str] = id_column()
    action: Mapped[str] = mapped_column(String(32))
    api_key_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("api_keys.id"), index=True
    )
    job_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("jobs.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = created_column()
