"""The api_keys table: client keys, stored only as keyed hashes, with their limits and state."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base, UTCDateTime, created_column, id_column

NAME_LENGTH = 128


class ApiKey(Base):
    """A key; `prefix` is the first characters of the plain key, shown to tell keys apart.

    `key_hash` is HMAC-SHA256(settings.api_key_secret, key) in hex. `rpm` and
    `max_active_jobs` left NULL mean the settings' defaults. A key with `suspended_at` set
    (by moderation) answers 401 key_suspended; a revoked key answers 401 invalid_api_key.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_column()
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    quota_images_per_day: Mapped[int | None] = mapped_column(Integer)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    rpm: Mapped[int | None] = mapped_column(Integer)
    max_active_jobs: Mapped[int | None] = mapped_column(Integer)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    suspended_reason: Mapped[str | None] = mapped_column(String(512))
