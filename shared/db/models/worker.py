"""The workers table: the fleet registry, one row per process that runs stage tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import ID_LENGTH, Base, UTCDateTime

WORKER_ID_LENGTH = 255


class Worker(Base):
    """A worker process. `id` is "<celery node name>:<pid>", the `jobs.worker_id` of its claims.

    The worker rewrites its row every heartbeat; a row whose heartbeat is older than the stale
    threshold is a lost worker (shown as such, not dropped). `stopped_at` marks a clean exit.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(WORKER_ID_LENGTH), primary_key=True)
    node: Mapped[str] = mapped_column(String(WORKER_ID_LENGTH))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[list[Any]] = mapped_column(JSON, default=list)
    device: Mapped[str] = mapped_column(String(32))
    dtype: Mapped[str] = mapped_column(String(16))
    family: Mapped[str] = mapped_column(String(1024))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # No foreign key: the registry outlives jobs, and a heartbeat must never wait on jobs' locks.
    current_job_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    current_stage: Mapped[str | None] = mapped_column(String(16))
    current_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    jobs_done: Mapped[int] = mapped_column(Integer, default=0)
