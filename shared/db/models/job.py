"""The jobs table: one render request, its parameters, state, progress and outcome."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import ID_LENGTH, Base, UTCDateTime, created_column, id_column, utcnow

KEY_LENGTH = 512


class Job(Base):
    """A render job. `status` holds a `shared.db.states.JobStatus` value."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created_at", "status", "created_at"),
        Index("ix_jobs_created_at_id", "created_at", "id"),
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_jobs_api_key_idempotency"),
    )

    id: Mapped[str] = id_column()
    kind: Mapped[str] = mapped_column(String(16))  # generate | variation | edit
    status: Mapped[str] = mapped_column(String(16), default="queued")
    prompt: Mapped[str] = mapped_column(Text, default="")
    n: Mapped[int] = mapped_column(Integer)
    size: Mapped[str] = mapped_column(String(16))  # "256x256"
    seed: Mapped[int] = mapped_column(BigInteger)
    sampler: Mapped[str] = mapped_column(String(16))
    steps_prior: Mapped[int] = mapped_column(Integer)
    steps_decoder: Mapped[int] = mapped_column(Integer)
    steps_upsampler: Mapped[int] = mapped_column(Integer)
    prior_guidance: Mapped[float] = mapped_column(Float)
    decoder_guidance: Mapped[float] = mapped_column(Float)
    input_image_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    mask_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    api_key_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("api_keys.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # Claims: attempt counts deliveries that claimed the job; heartbeat_at says the claim lives.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1 over all stages
    progress_stage: Mapped[str | None] = mapped_column(String(16))
    progress_step: Mapped[int | None] = mapped_column(Integer)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    # Stage outputs kept so a later attempt resumes from the last finished stage.
    prior_output_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    decoder_output_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    status_reason: Mapped[str | None] = mapped_column(String(64))  # a code a client can show
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = created_column()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )
