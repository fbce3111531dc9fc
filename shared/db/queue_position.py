"""Where a waiting job stands: its place in its stage queue, an ETA, and whether it can run.

Cheap by design: one indexed COUNT of the jobs ahead in the same queue, the mean duration of
each stage's recent attempts (SAMPLE of them, by the finished_at index) and the live workers
of the registry, which holds one row per worker process.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from shared.db.base import utcnow
from shared.db.models import Job, StageAttempt
from shared.db.states import STAGE_ORDER, JobStatus, Stage
from shared.db.workers import WorkerState, list_workers

SAMPLE = 20
# Before any attempt of a stage has finished, assume this many seconds per run.
UNMEASURED_STAGE_S = 10.0


@dataclass(frozen=True)
class QueueStanding:
    """A waiting job's standing; `servable` False says no live worker serves its queue."""

    stage: Stage
    queue_position: int  # jobs ahead of it in the same stage queue (0: it is next)
    eta_s: float  # seconds until it is expected to finish all its stages
    servable: bool
    unservable_reason: str | None = None


def waiting_stage(job: Job) -> Stage | None:
    """The stage queue the job waits in (no claim on it), or None if it is not waiting."""
    if job.status == JobStatus.queued.value:
        return Stage.prior
    if job.status in {s.value for s in STAGE_ORDER} and job.worker_id is None:
        return Stage(job.status)
    return None


def _waiting_in(stage: Stage) -> ColumnElement[bool]:
    at_stage = (Job.status == stage.value) & Job.worker_id.is_(None)
    return or_(Job.status == JobStatus.queued.value, at_stage) if stage is Stage.prior else at_stage


def stage_seconds(session: Session) -> dict[Stage, float]:
    """Mean seconds of each stage's last SAMPLE succeeded attempts."""
    means = {}
    for stage in STAGE_ORDER:
        recent = (
            select(StageAttempt.started_at, StageAttempt.finished_at)
            .where(StageAttempt.stage == stage.value, StageAttempt.status == "succeeded",
                   StageAttempt.finished_at.is_not(None))
            .order_by(StageAttempt.finished_at.desc()).limit(SAMPLE)
        )  # fmt: skip
        rows = session.execute(recent).all()
        spans = [(end - start).total_seconds() for start, end in rows if end is not None]
        means[stage] = sum(spans) / len(spans) if spans else UNMEASURED_STAGE_S
    return means


def live_workers(session: Session, *, stale_after_s: float, now: datetime) -> dict[Stage, int]:
    """Live (idle or busy) registered workers per stage queue they serve."""
    counts = {stage: 0 for stage in STAGE_ORDER}
    for view in list_workers(session=session, stale_after_s=stale_after_s, now=now):
        if view.state in (WorkerState.idle, WorkerState.busy):
            for queue in view.row.queues or []:
                if queue in counts:
                    counts[Stage(queue)] += 1
    return counts


@dataclass(frozen=True)
class FleetPace:
    """What every standing of one moment shares: stage times and live workers per queue."""

    stage_s: dict[Stage, float]
    workers: dict[Stage, int]


def fleet_pace(session: Session, *, stale_after_s: float, now: datetime | None = None) -> FleetPace:
    return FleetPace(stage_seconds(session),
                     live_workers(session, stale_after_s=stale_after_s, now=now or utcnow()))


def standing(
    session: Session, job: Job, *, stale_after_s: float, now: datetime | None = None,
    pace: FleetPace | None = None,
) -> QueueStanding | None:
    """The standing of a waiting job; None when it is running or finished. Pass `pace` to
    reuse one reading of the fleet for many jobs (a page of a listing)."""
    stage = waiting_stage(job)
    if stage is None:
        return None
    now = now or utcnow()
    ahead = session.scalar(
        select(func.count()).select_from(Job)
        .where(_waiting_in(stage), Job.created_at < job.created_at)
    ) or 0  # fmt: skip
    running = session.scalar(
        select(func.count()).select_from(Job)
        .where(Job.status == stage.value, Job.worker_id.is_not(None))
    ) or 0  # fmt: skip
    pace = pace or fleet_pace(session, stale_after_s=stale_after_s, now=now)
    means, workers = pace.stage_s, pace.workers
    serving = max(1, workers[stage])
    # The jobs ahead, and half of each running one on average, shared by the stage's workers;
    # then this job's own run of this stage and of every later one.
    wait = (ahead + 0.5 * running) * means[stage] / serving
    own = sum(means[s] for s in STAGE_ORDER[STAGE_ORDER.index(stage):])
    missing = [s.value for s in STAGE_ORDER[STAGE_ORDER.index(stage):] if workers[s] == 0]
    reason = (f"no live worker serves the {', '.join(missing)} queue"
              + ("s" if len(missing) > 1 else "")) if missing else None  # fmt: skip
    return QueueStanding(stage, int(ahead), round(wait + own, 1), not missing, reason)


