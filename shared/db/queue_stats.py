"""Queue depth and recent throughput per stage, read from the database (any broker, one truth).

Queue depth counts jobs waiting at a stage without a live claim: what a worker of that queue
would pick up next, whether or not the broker still holds their message. It reads only jobs in
an active status, through the (status, created_at) index. Throughput counts stage attempts
that finished in a recent window, through the index on stage_attempts.finished_at.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from shared.db.base import utcnow
from shared.db.models import Job, StageAttempt
from shared.db.states import STAGE_ORDER, JobStatus, Stage

# A queued job waits for the prior; a job in a stage status waits for (or runs) that stage.
WAITING_STATUS: dict[str, Stage] = {JobStatus.queued.value: Stage.prior} | {
    stage.value: stage for stage in STAGE_ORDER
}
ATTEMPT_OUTCOMES = ("succeeded", "failed", "lost", "cancelled")


@dataclass(frozen=True)
class StageLoad:
    """Jobs at one stage now: waiting without a live claim, and running under one."""

    stage: Stage
    waiting: int
    running: int


@dataclass(frozen=True)
class StageThroughput:
    """Stage attempts that finished within the window, by outcome."""

    stage: Stage
    window_s: float
    finished: dict[str, int]

    @property
    def succeeded_per_minute(self) -> float:
        return self.finished.get("succeeded", 0) * 60.0 / self.window_s


def stage_loads(
    *, session: Session, stale_after_s: float, now: datetime | None = None
) -> list[StageLoad]:
    """Waiting and running jobs of every stage, in stage order (zeros included)."""
    cutoff = (now or utcnow()) - timedelta(seconds=stale_after_s)
    live = and_(
        Job.worker_id.is_not(None), Job.heartbeat_at.is_not(None), Job.heartbeat_at >= cutoff
    )
    query = (
        select(Job.status, live, func.count())
        .where(Job.status.in_(list(WAITING_STATUS)))
        .group_by(Job.status, live)
    )
    waiting = dict.fromkeys(STAGE_ORDER, 0)
    running = dict.fromkeys(STAGE_ORDER, 0)
    for status, claimed, count in session.execute(query):
        stage = WAITING_STATUS[status]
        (running if claimed else waiting)[stage] += int(count)
    return [StageLoad(stage, waiting[stage], running[stage]) for stage in STAGE_ORDER]


def stage_throughput(
    *, session: Session, window_s: float, now: datetime | None = None
) -> list[StageThroughput]:
    """Attempts finished per stage and outcome over the last `window_s` seconds."""
    cutoff = (now or utcnow()) - timedelta(seconds=window_s)
    query = (
        select(StageAttempt.stage, StageAttempt.status, func.count())
        .where(StageAttempt.finished_at >= cutoff)
        .group_by(StageAttempt.stage, StageAttempt.status)
    )
    finished: dict[str, dict[str, int]] = {
        stage.value: dict.fromkeys(ATTEMPT_OUTCOMES, 0) for stage in STAGE_ORDER
    }
    for stage, status, count in session.execute(query):
        if stage in finished:
            finished[stage][status] = finished[stage].get(status, 0) + int(count)
    return [StageThroughput(stage, window_s, finished[stage.value]) for stage in STAGE_ORDER]
