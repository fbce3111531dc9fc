"""The api_keys table: client keys, stored only as hashes, with an optional daily image quota."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base, UTCDateTime, created_column, id_column


class ApiKey(Base):
    """A key; `prefix` is the first characters of the plain key, shown to tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(128))
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_column()
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    quota_images_per_day: Mapped[int | None] = mapped_column(Integer)
