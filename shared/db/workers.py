"""The worker registry: a worker saves its row every heartbeat; the fleet view reads them back.

A worker is the process that runs stage tasks (a prefork pool child, or the main process of a
solo/threads worker); its id is "<node name>:<pid>", the `jobs.worker_id` its claims carry.
Its state is derived at read time, never stored: a row whose heartbeat is older than the
stale threshold is `lost`, however it ended, so a kill -9 shows up instead of vanishing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shared.db.base import rowcount, utcnow
from shared.db.models import Worker


class WorkerState(StrEnum):
    """What a registered worker is doing, as the fleet view and `unclip_workers` tell it."""

    idle = "idle"  # heart-beating, no job
    busy = "busy"  # heart-beating, running a stage
    lost = "lost"  # silent past the stale threshold (killed, hung, or cut off)
    stopped = "stopped"  # said goodbye at a clean shutdown


@dataclass(frozen=True)
class WorkerRecord:
    """What a worker says about itself once, at registration."""

    id: str
    node: str
    host: str
    pid: int
    queues: tuple[str, ...]
    device: str
    dtype: str
    family: str
    started_at: datetime


@dataclass(frozen=True)
class WorkerActivity:
    """What changes between heartbeats: the job and stage in hand, and jobs finished so far."""

    current_job_id: str | None = None
    current_stage: str | None = None
    current_since: datetime | None = None
    jobs_done: int = 0


@dataclass(frozen=True)
class WorkerView:
    """A registry row with its derived state."""

    row: Worker
    state: WorkerState


def save_worker(
    *,
    session: Session,
    record: WorkerRecord,
    activity: WorkerActivity,
    now: datetime | None = None,
) -> None:
    """Heartbeat: rewrite the worker's row, inserting it if it is missing (first beat, pruned)."""
    now = now or utcnow()
    values = {
        "heartbeat_at": now,
        "stopped_at": None,
        "current_job_id": activity.current_job_id,
        "current_stage": activity.current_stage,
        "current_since": activity.current_since,
        "jobs_done": activity.jobs_done,
    }
    result = session.execute(update(Worker).where(Worker.id == record.id).values(**values))
    if rowcount(result) == 1:
        return
    session.add(
        Worker(
            id=record.id,
            node=record.node,
            host=record.host,
            pid=record.pid,
            queues=list(record.queues),
            device=record.device,
            dtype=record.dtype,
            family=record.family,
            started_at=record.started_at,
            **values,
        )
    )
    session.flush()


def stop_worker(*, session: Session, worker_id: str, now: datetime | None = None) -> bool:
    """Mark a clean exit; False when the worker has no row."""
    now = now or utcnow()
    statement = (
        update(Worker)
        .where(Worker.id == worker_id)
        .values(stopped_at=now, heartbeat_at=now, current_job_id=None, current_stage=None,
                current_since=None)
    )  # fmt: skip
    return rowcount(session.execute(statement)) == 1


def worker_state(row: Worker, *, stale_after_s: float, now: datetime) -> WorkerState:
    """The state of a row at `now` (a stopped worker stays stopped, a silent one is lost)."""
    if row.stopped_at is not None:
        return WorkerState.stopped
    if row.heartbeat_at < now - timedelta(seconds=stale_after_s):
        return WorkerState.lost
    return WorkerState.busy if row.current_job_id else WorkerState.idle


def list_workers(
    *, session: Session, stale_after_s: float, now: datetime | None = None
) -> list[WorkerView]:
    """Every registered worker with its state: live ones first, then by node and id."""
    now = now or utcnow()
    rows: Sequence[Worker] = session.scalars(select(Worker).order_by(Worker.node, Worker.id)).all()
    views = [WorkerView(r, worker_state(r, stale_after_s=stale_after_s, now=now)) for r in rows]
    order = {WorkerState.busy: 0, WorkerState.idle: 1, WorkerState.lost: 2, WorkerState.stopped: 3}
    return sorted(views, key=lambda view: order[view.state])


def count_workers(
    *, session: Session, stale_after_s: float, now: datetime | None = None
) -> dict[WorkerState, int]:
    """How many workers are in each state (every state present, zero included).

    The registry holds one row per worker process (pruned after settings.fleet.retention_s),
    so reading the rows is cheap and keeps `worker_state` the one definition of a state.
    """
    views = list_workers(session=session, stale_after_s=stale_after_s, now=now)
    counts = Counter({state: 0 for state in WorkerState})
    counts.update(view.state for view in views)
    return dict(counts)


def prune_workers(*, session: Session, older_than_s: float, now: datetime | None = None) -> int:
    """Delete rows of workers silent (stopped or lost) for longer than `older_than_s`."""
    cutoff = (now or utcnow()) - timedelta(seconds=older_than_s)
    return rowcount(session.execute(delete(Worker).where(Worker.heartbeat_at < cutoff)))
