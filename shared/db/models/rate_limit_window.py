"""The rate_limit_windows table: fixed-window request counters shared by every API process."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base

KEY_LENGTH = 255


class RateLimitWindow(Base):
    """A counter of the `limits` library in embedded mode (Redis holds them otherwise).

    `expires_at` is Unix time in seconds, so one atomic UPSERT can compare and reset it.
    """

    __tablename__ = "rate_limit_windows"

    key: Mapped[str] = mapped_column(String(KEY_LENGTH), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[float] = mapped_column(Float)
