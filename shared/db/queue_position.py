"""Where a waiting job stands: its place in its stage queue, an ETA, and whether it can run.

Cheap by design: one indexed COUNT of the jobs ahead in the same queue, the mean duration of
each stage's recent attempts (SAMPLE of them, by the finished_at index) and the live workers
of the registry, which holds one row per worker process. Where the workers of the job's stage
also serve the later stages (one worker on all queues, as `unclip up` runs), one grouped
COUNT more: the jobs past that stage, whose remaining stages those workers run as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from shared.db.base import utcnow
from shared.db.models import Job, StageAttempt
from shared.db.states import STAGE_ORDER, JobStatus, Stage
from shared.db.workers import WorkerState, list_workers

SAMPLE = 20
STAGE_VALUES = frozenset(stage.value for stage in STAGE_ORDER)
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


def live_queue_sets(
    session: Session, *, stale_after_s: float, now: datetime
) -> list[frozenset[Stage]]:
    """The stage queues each live (idle or busy) registered worker serves."""
    return [
        frozenset(Stage(q) for q in view.row.queues or [] if q in STAGE_VALUES)
        for view in list_workers(session=session, stale_after_s=stale_after_s, now=now)
        if view.state in (WorkerState.idle, WorkerState.busy)
    ]


@dataclass(frozen=True)
class FleetPace:
    """What every standing of one moment shares: stage times and live workers per queue."""

    stage_s: dict[Stage, float]
    workers: dict[Stage, int]
    # Per stage: every live worker of it also serves each later stage (the embedded default's
    # one worker on all queues), so the jobs ahead's later stages take the same workers' time.
    shared_later: dict[Stage, bool] = field(default_factory=dict)


def fleet_pace(session: Session, *, stale_after_s: float, now: datetime | None = None) -> FleetPace:
    sets = live_queue_sets(session, stale_after_s=stale_after_s, now=now or utcnow())
    workers = {stage: sum(stage in queues for queues in sets) for stage in STAGE_ORDER}
    shared = {
        stage: workers[stage] > 0
        and all(set(later_stages(stage)) <= queues for queues in sets if stage in queues)
        for stage in STAGE_ORDER
    }
    return FleetPace(stage_seconds(session), workers, shared)


def later_stages(stage: Stage) -> tuple[Stage, ...]:
    return STAGE_ORDER[STAGE_ORDER.index(stage) + 1 :]


def _later_work(session: Session, stage: Stage, means: dict[Stage, float]) -> float:
    """Seconds of work the jobs already past `stage` still need (waiting ones their remaining
    stages; running ones half their current stage, on average, and the rest)."""
    rows = session.execute(
        select(Job.status, Job.worker_id.is_not(None), func.count()).select_from(Job)
        .where(Job.status.in_([s.value for s in later_stages(stage)]))
        .group_by(Job.status, Job.worker_id.is_not(None))
    ).all()  # fmt: skip
    work = 0.0
    for status, running, count in rows:
        at = Stage(status)
        rest = sum(means[s] for s in later_stages(at))
        work += count * ((0.5 if running else 1.0) * means[at] + rest)
    return work


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
    # then this job's own run of this stage and of every later one. Where those workers also
    # run the later stages, the jobs ahead's later stages (and those of the jobs already
    # past this stage) come out of the same workers' time first.
    wait = (ahead + 0.5 * running) * means[stage] / serving
    if pace.shared_later.get(stage, False):
        rest = sum(means[s] for s in later_stages(stage))
        wait += ((ahead + running) * rest + _later_work(session, stage, means)) / serving
    own = sum(means[s] for s in STAGE_ORDER[STAGE_ORDER.index(stage):])
    missing = [s.value for s in STAGE_ORDER[STAGE_ORDER.index(stage):] if workers[s] == 0]
    reason = (f"no live worker serves the {', '.join(missing)} queue"
              + ("s" if len(missing) > 1 else "")) if missing else None  # fmt: skip
    return QueueStanding(stage, int(ahead), round(wait + own, 1), not missing, reason)


