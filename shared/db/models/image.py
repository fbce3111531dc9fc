"""The job_images table: one output image of a job, visible to clients once published."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import ID_LENGTH, Base, created_column, id_column
from shared.db.models.job import KEY_LENGTH


class JobImage(Base):
    """Image `index` (0..n-1) of a job, written by the attempt that rendered it."""

    __tablename__ = "job_images"
    __table_args__ = (UniqueConstraint("job_id", "index", name="uq_job_images_job_id_index"),)

    id: Mapped[str] = id_column()
    job_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    index: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    published: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = created_column()
