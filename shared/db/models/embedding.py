"""The embeddings table: the stored CLIP image embedding of each output image and input image."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import ID_LENGTH, Base, created_column
from shared.db.models.job import KEY_LENGTH


class Embedding(Base):
    """Row `row` of the (n, D) float32 tensor stored under `storage_key` (a stage output).

    `source` is "output" (the embedding image `index` of the job was decoded from) or "input"
    (the CLIP embedding of a variation's input image). `scope` is the owning key.
    """

    __tablename__ = "embeddings"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # emb_<uuid hex>
    job_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(8))
    index: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(KEY_LENGTH))
    row: Mapped[int] = mapped_column(Integer)
    dim: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_column()
