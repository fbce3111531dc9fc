"""Fleet view schemas: workers with their state, queue depth and recent throughput per stage."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from shared.db.queue_stats import StageLoad, StageThroughput
from shared.db.workers import WorkerState, WorkerView


class WorkerPublic(BaseModel):
    """One worker process of the registry."""

    id: str = Field(description="<node name>:<pid>; the worker_id of the claims it holds")
    node: str
    host: str
    pid: int
    queues: list[str]
    device: str
    dtype: str
    family: str
    state: WorkerState = Field(description="idle, busy, lost (silent past the stale threshold)"
                               " or stopped (exited cleanly)")  # fmt: skip
    started_at: datetime
    last_heartbeat_at: datetime
    stopped_at: datetime | None
    current_job_id: str | None
    current_stage: str | None
    current_since: datetime | None
    jobs_done: int = Field(description="stage runs this worker completed")


class QueuePublic(BaseModel):
    """Jobs at one stage: waiting without a live claim (the queue depth), and running."""

    stage: str
    depth: int
    running: int


class ThroughputPublic(BaseModel):
    """Stage attempts finished in the last `window_s` seconds, by outcome."""

    stage: str
    window_s: float
    succeeded: int
    failed: int
    lost: int
    cancelled: int
    succeeded_per_minute: float


class FleetPublic(BaseModel):
    """The whole fleet as the database sees it now."""

    generated_at: datetime
    stale_after_s: float
    workers: list[WorkerPublic]
    queues: list[QueuePublic]
    throughput: list[ThroughputPublic]


def worker_public(view: WorkerView) -> WorkerPublic:
    row = view.row
    return WorkerPublic(
        id=row.id, node=row.node, host=row.host, pid=row.pid, queues=list(row.queues),
        device=row.device, dtype=row.dtype, family=row.family, state=view.state,
        started_at=row.started_at, last_heartbeat_at=row.heartbeat_at, stopped_at=row.stopped_at,
        current_job_id=row.current_job_id, current_stage=row.current_stage,
        current_since=row.current_since, jobs_done=row.jobs_done,
    )  # fmt: skip


def queue_public(load: StageLoad) -> QueuePublic:
    return QueuePublic(stage=load.stage.value, depth=load.waiting, running=load.running)


def throughput_public(stats: StageThroughput) -> ThroughputPublic:
    done = stats.finished
    return ThroughputPublic(
        stage=stats.stage.value, window_s=stats.window_s, succeeded=done.get("succeeded", 0),
        failed=done.get("failed", 0), lost=done.get("lost", 0),
        cancelled=done.get("cancelled", 0), succeeded_per_minute=stats.succeeded_per_minute,
    )  # fmt: skip
