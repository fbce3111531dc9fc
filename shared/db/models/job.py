"""The jobs table: one render request, its parameters, state, progress and outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import ID_LENGTH, Base, UTCDateTime, created_column, id_column, utcnow
from shared.job_params import EMBEDDING_ID_LENGTH, KIND_LENGTH, SAMPLER_LENGTH, SIZE_LENGTH

KEY_LENGTH = 512


class Job(Base):
    """A render job. `status` holds a `shared.db.states.JobStatus` value.

    The parameter columns are shared.job_params.PARAM_COLUMNS (tests/shared/test_job_params.py
    checks it); those a client left out are NULL, and `params_used` records what ran.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created_at", "status", "created_at"),
        Index("ix_jobs_created_at_id", "created_at", "id"),
        # A key's active jobs (the max_active_jobs quota) and its listing by status.
        Index("ix_jobs_api_key_id_status", "api_key_id", "status"),
    )

    id: Mapped[str] = id_column()
    kind: Mapped[str] = mapped_column(String(KIND_LENGTH))  # shared.job_params.Kind
    status: Mapped[str] = mapped_column(String(16), default="queued")
    prompt: Mapped[str] = mapped_column(Text, default="")
    n: Mapped[int] = mapped_column(Integer)
    size: Mapped[str | None] = mapped_column(String(SIZE_LENGTH))  # "256x256"; NULL: native
    seed: Mapped[int] = mapped_column(BigInteger)  # drawn at submit when the client sends none
    sampler: Mapped[str | None] = mapped_column(String(SAMPLER_LENGTH))
    steps_prior: Mapped[int | None] = mapped_column(Integer)
    steps_decoder: Mapped[int | None] = mapped_column(Integer)
    steps_upsampler: Mapped[int | None] = mapped_column(Integer)
    prior_guidance: Mapped[float | None] = mapped_column(Float)
    decoder_guidance: Mapped[float | None] = mapped_column(Float)
    # The family's native output size as the API read it at submit ("64x64").
    native_size: Mapped[str | None] = mapped_column(String(SIZE_LENGTH))
    # shared.job_params.ParamsUsed as JSON, written by the worker before the prior runs.
    params_used: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    input_image_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    mask_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    # Embedding-level API (issue 15): a variation of a stored embedding (its id, and the job's
    # own copy of the vector), and a mix's entries (shared.job_params.StoredMixEntry list).
    input_embedding_id: Mapped[str | None] = mapped_column(String(EMBEDDING_ID_LENGTH))
    input_embedding_key: Mapped[str | None] = mapped_column(String(KEY_LENGTH))
    mix: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON(none_as_null=True))
    # What each stage ran with, {stage: shared.manifest.StageRun}, written as the stage
    # completes (GET /v1/jobs/{id}/manifest); a replay names its original and what it ran on.
    stage_runs: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    replay_of: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    replay_expect: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    api_key_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("api_keys.id"))
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
    # Comma-separated webhook_events (started, progress, completed); NULL means completed.
    webhook_events: Mapped[str | None] = mapped_column(String(64))
    # When retention removed the uploaded inputs (shared/retention.py); NULL: still kept.
    inputs_removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = created_column()
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow
    )
