"""Worker-side SQL: claim, heartbeat, progress, finish or fail a stage, each a conditional UPDATE.

A stage task owns its job only while `jobs.attempt` still holds the number its claim got. Every
write below is conditional on that number (and on the stage's status), so a duplicate delivery,
a stale worker or a cancelled job changes nothing: zero rows updated tells the caller so.
Callers own the transaction (`with session.begin(): ...`) and publish the next stage after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from shared.db.base import rowcount, utcnow
from shared.db.job_events import DeliveryTarget, record_event, record_status_event
from shared.db.models import Job, JobImage, StageAttempt
from shared.db.states import STAGE_ORDER, JobStatus, Stage, next_stage, overall_progress
from shared.metrics import count_finished

# Where each stage's output key lives on the job row (the upsampler's outputs are job_images).
OUTPUT_COLUMN = {"prior": Job.prior_output_key, "decoder": Job.decoder_output_key}
TOO_MANY_ATTEMPTS = "too_many_attempts"


@dataclass(frozen=True)
class Claim:
    """A live claim on one stage of a job."""

    job_id: str
    stage: Stage
    attempt: int  # the job-wide attempt number; storage keys and job_images carry it
    worker_id: str
    # The job's webhook, read by the claim itself, so the events of this attempt need not
    # read the job row again (None: record_event reads it).
    delivery: DeliveryTarget | None = None


@dataclass(frozen=True)
class ImageRecord:
    """One finished output image to record."""

    index: int
    storage_key: str
    width: int
    height: int


def _check_stage(stage: str) -> Stage:
    try:
        return Stage(stage)
    except ValueError:
        allowed = ", ".join(s.value for s in STAGE_ORDER)
        raise ValueError(f"stage {stage!r} is not one of {allowed}") from None


def _next_status(stage: Stage) -> JobStatus:
    following = next_stage(stage)
    return JobStatus.succeeded if following is None else JobStatus(following.value)


# A stage attempt handed back through no fault of the job (a draining or unhealthy worker)
# does not count against max_attempts; every other attempt does.
RELEASED = "released"


def count_stage_attempts(session: Session, *, job_id: str, stage: str) -> int:
    """How many times this stage of the job has been claimed, not counting hand-backs."""
    query = select(func.count()).where(
        StageAttempt.job_id == job_id, StageAttempt.stage == stage, StageAttempt.status != RELEASED
    )
    return int(session.execute(query).scalar_one())


def claim_stage(
    session: Session,
    *,
    job_id: str,
    stage: str,
    worker_id: str,
    stale_after_s: float,
    max_attempts: int,
    now: datetime | None = None,
) -> Claim | None:
    """Claim `stage` of a job: None when another delivery owns it or the job has moved on.

    Claimable: a queued job (prior only), or a job in this stage that no worker holds or whose
    holder stopped heart-beating `stale_after_s` ago. A stage already tried `max_attempts`
    times fails the job instead (a poison job must not loop forever).
    """
    stage = _check_stage(stage)
    now = now or utcnow()
    statuses = [JobStatus.queued, stage] if stage == Stage.prior else [stage]
    claimable = and_(
        Job.id == job_id,
        Job.status.in_(statuses),
        or_(
            Job.status == JobStatus.queued,
            Job.worker_id.is_(None),
            Job.heartbeat_at.is_(None),
            Job.heartbeat_at < now - timedelta(seconds=stale_after_s),
        ),
    )
    tried = count_stage_attempts(session, job_id=job_id, stage=stage)
    if tried >= max_attempts:
        message = f"stage {stage} was tried {max_attempts} times (max_attempts={max_attempts})"
        failed = session.execute(
            update(Job)
            .where(claimable)
            .values(
                status=JobStatus.failed,
                error_code=TOO_MANY_ATTEMPTS,
                error_message=message,
                worker_id=None,
                finished_at=now,
            )
        )
        if rowcount(failed) == 1:
            count_finished(JobStatus.failed.value)  # unclip_jobs_finished_total
            record_event(session, job_id, "failed", {"code": TOO_MANY_ATTEMPTS, "stage": stage})
        _close_running(session, job_id=job_id, stage=stage, status="lost", now=now)
        return None
    claimed = session.execute(
        update(Job)
        .where(claimable)
        .values(
            status=stage,
            attempt=Job.attempt + 1,
            worker_id=worker_id,
            heartbeat_at=now,
            started_at=func.coalesce(Job.started_at, now),
            progress_stage=stage,
            progress_step=0,
            progress_total=None,
        )
        .returning(Job.attempt, Job.webhook_url, Job.webhook_events, Job.api_key_id)
    ).one_or_none()
    if claimed is None:
        return None
    attempt = claimed.attempt
    delivery = DeliveryTarget.of(job_id, claimed.webhook_url, claimed.webhook_events,
                                 claimed.api_key_id)  # fmt: skip
    if tried:  # an earlier claim of this stage that is still "running" died without a word
        _close_running(session, job_id=job_id, stage=stage, status="lost", now=now)
    session.add(
        StageAttempt(
            job_id=job_id,
            stage=stage,
            attempt=attempt,
            worker_id=worker_id,
            status="running",
            started_at=now,
        )
    )
    session.flush()
    record_event(session, job_id, "started", {"stage": stage.value, "attempt": attempt},
                 target=delivery)  # fmt: skip
    return Claim(job_id=job_id, stage=stage, attempt=attempt, worker_id=worker_id,
                 delivery=delivery)  # fmt: skip


def live_holder(session: Session, *, job_id: str, stage: str) -> datetime | None:
    """The heartbeat of the worker holding `stage` of the job now, None when nobody holds it.

    A delivery that could not claim uses it to tell "the job moved on" (ack and forget) from
    "another worker holds this stage" (which may have died: look again once it would be stale).
    """
    query = select(Job.heartbeat_at).where(
        Job.id == job_id, Job.status == _check_stage(stage), Job.worker_id.is_not(None)
    )
    return session.execute(query).scalar_one_or_none()


def _owned(claim: Claim) -> ColumnElement[bool]:
    return and_(Job.id == claim.job_id, Job.status == claim.stage, Job.attempt == claim.attempt)


def _close_running(
    session: Session,
    *,
    job_id: str,
    stage: str,
    status: str,
    now: datetime,
    attempt: int | None = None,
    error: str | None = None,
) -> None:
    condition = [
        StageAttempt.job_id == job_id,
        StageAttempt.stage == stage,
        StageAttempt.status == "running",
    ]
    if attempt is not None:
        condition.append(StageAttempt.attempt == attempt)
    session.execute(
        update(StageAttempt).where(*condition).values(status=status, finished_at=now, error=error)
    )


def heartbeat(session: Session, claim: Claim, *, now: datetime | None = None) -> bool:
    """Say the claim is alive; False when the job is no longer this claim's (cancelled, taken)."""
    result = session.execute(update(Job).where(_owned(claim)).values(heartbeat_at=now or utcnow()))
    return rowcount(result) == 1


def record_progress(
    session: Session,
    claim: Claim,
    *,
    step: int,
    total: int,
    progress: float,
    now: datetime | None = None,
) -> bool:
    """Store per-step progress (and heartbeat); False when the claim is gone."""
    result = session.execute(
        update(Job)
        .where(_owned(claim))
        .values(
            progress_stage=claim.stage,
            progress_step=step,
            progress_total=total,
            progress=min(max(progress, 0.0), 1.0),
            heartbeat_at=now or utcnow(),
        )
    )
    if rowcount(result) != 1:
        return False
    record_event(session, claim.job_id, "progress", {
        "stage": claim.stage.value, "step": step, "steps": total,
        "overall": round(min(max(progress, 0.0), 1.0), 4)}, target=claim.delivery)  # fmt: skip
    return True


def job_status(session: Session, job_id: str) -> str | None:
    """The job's status now (the cooperative cancel check reads it), None if no such job."""
    return session.execute(select(Job.status).where(Job.id == job_id)).scalar_one_or_none()


def complete_stage(
    session: Session,
    claim: Claim,
    *,
    output_key: str | None = None,
    images: Sequence[ImageRecord] = (),
    publish: bool = True,
    now: datetime | None = None,
) -> bool:
    """Advance the job past `claim.stage`, storing its output; False if the claim was lost.

    The prior and decoder store `output_key` on the job; the upsampler records `images`
    and moves the job to succeeded. Nothing is written unless the attempt still matches.
    """
    now = now or utcnow()
    values: dict[str, object] = {
        "status": _next_status(claim.stage),
        "worker_id": None,
        "heartbeat_at": None,
    }
    if claim.stage in OUTPUT_COLUMN:
        if output_key is None:
            raise ValueError(f"stage {claim.stage} must store an output key, got None")
        values[OUTPUT_COLUMN[claim.stage].key] = output_key
        values["progress"] = (STAGE_ORDER.index(claim.stage) + 1) / len(STAGE_ORDER)
    else:
        if not images:
            raise ValueError("the upsampler stage must record its images, got none")
        values.update(progress=1.0, finished_at=now, error_code=None, error_message=None)
    if rowcount(session.execute(update(Job).where(_owned(claim)).values(**values))) != 1:
        return False
    _close_running(
        session,
        job_id=claim.job_id,
        stage=claim.stage,
        status="succeeded",
        now=now,
        attempt=claim.attempt,
    )
    add_images(session, claim, images, publish=publish)
    record_event(session, claim.job_id, "stage_done", {"stage": claim.stage.value},
                 target=claim.delivery)  # fmt: skip
    if values["status"] == JobStatus.succeeded and publish:
        record_status_event(session, claim.job_id, JobStatus.succeeded.value,
                            target=claim.delivery)  # fmt: skip
    return True


def add_images(
    session: Session, claim: Claim, images: Sequence[ImageRecord], *, publish: bool = True
) -> None:
    """Insert job_images rows for this attempt's outputs."""
    for image in images:
        session.add(
            JobImage(
                job_id=claim.job_id,
                index=image.index,
                attempt=claim.attempt,
                storage_key=image.storage_key,
                width=image.width,
                height=image.height,
                published=publish,
            )
        )
    session.flush()


def fail_stage(
    session: Session,
    claim: Claim,
    *,
    error_code: str,
    error_message: str,
    retry: bool,
    now: datetime | None = None,
) -> bool:
    """Record a failed attempt; with `retry` release the claim for the next delivery, else fail.

    False when the claim was already lost (the job was cancelled or taken over).
    """
    now = now or utcnow()
    values: dict[str, object] = {
        "worker_id": None,
        "heartbeat_at": None,
        "error_code": error_code,
        "error_message": error_message,
    }
    if not retry:
        values.update(status=JobStatus.failed, finished_at=now)
    _close_running(
        session,
        job_id=claim.job_id,
        stage=claim.stage,
        status="failed",
        now=now,
        attempt=claim.attempt,
        error=f"{error_code}: {error_message}",
    )
    moved = rowcount(session.execute(update(Job).where(_owned(claim)).values(**values))) == 1
    if moved and not retry:
        record_event(session, claim.job_id, "failed", {"stage": claim.stage.value,
                     "code": error_code}, target=claim.delivery)  # fmt: skip
    return moved


def close_cancelled(session: Session, claim: Claim, *, now: datetime | None = None) -> None:
    """Mark a stopped attempt cancelled and let go of the (already cancelled) job."""
    now = now or utcnow()
    _close_running(
        session,
        job_id=claim.job_id,
        stage=claim.stage,
        status="cancelled",
        now=now,
        attempt=claim.attempt,
    )
    session.execute(
        update(Job)
        .where(Job.id == claim.job_id, Job.attempt == claim.attempt)
        .values(worker_id=None, heartbeat_at=None)
    )


def release_claim(
    session: Session,
    claim: Claim,
    *,
    status: str,
    error: str | None = None,
    stale_before: datetime | None = None,
    now: datetime | None = None,
) -> bool:
    """Let go of a live claim so the next delivery can claim the stage at once.

    `status` is the attempt's end: "released" (handed back: not counted against max_attempts)
    or "lost" (the attempt died: counted). With `stale_before`, only a claim whose heartbeat
    is older than that is released (the sweeper must not take a claim that just beat).
    False when the claim was already gone.
    """
    now = now or utcnow()
    condition = _owned(claim)
    if stale_before is not None:
        condition = and_(condition, Job.heartbeat_at < stale_before)
    # The next attempt runs the stage from its first step: the job shows it waiting at the
    # stage's start, not at the step the released attempt had reached.
    released = session.execute(
        update(Job).where(condition).values(
            worker_id=None, heartbeat_at=None, progress_step=0, progress_total=None,
            progress=overall_progress(claim.stage, 0, 1),
        )
    )  # fmt: skip
    if rowcount(released) != 1:
        return False
    _close_running(
        session, job_id=claim.job_id, stage=claim.stage, status=status, now=now,
        attempt=claim.attempt, error=error,
    )  # fmt: skip
    return True


def release_dead_worker(
    session: Session,
    *,
    job_id: str,
    stage: str,
    worker_id: str,
    error: str,
    now: datetime | None = None,
) -> Claim | None:
    """Release the claim `worker_id` holds on the job's stage: its process is known dead.

    The worker's main process calls this when a pool child is lost or killed by the time
    limit, so a redelivered message takes over now, not once the heartbeat is stale.
    """
    stage = _check_stage(stage)
    attempt = session.execute(
        select(Job.attempt).where(Job.id == job_id, Job.status == stage, Job.worker_id == worker_id)
    ).scalar_one_or_none()
    if attempt is None:
        return None
    claim = Claim(job_id=job_id, stage=stage, attempt=attempt, worker_id=worker_id)
    return claim if release_claim(session, claim, status="lost", error=error, now=now) else None
