"""RenderTask: claim the job, run one stage with the per-process family, store, advance, enqueue.

Each stage task subclasses RenderTask and implements `render`. Everything around it is here:
the claim (a duplicate delivery is a no-op), the progress writer and cancel check, the
conditional completion, the next stage's message (sent after the commit), and failures
(transient ones retried with backoff, up to settings.max_attempts claims of the stage).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from celery import Task
from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.claims import (
    Claim,
    ImageRecord,
    claim_stage,
    close_cancelled,
    complete_stage,
    count_stage_attempts,
    fail_stage,
    job_status,
    live_holder,
)
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import Job
from shared.db.states import JobStatus, Stage, next_stage
from shared.queue.dispatch import enqueue_stage
from shared.settings import Settings, get_settings
from shared.storage.base import Storage
from shared.storage.factory import make_storage
from worker.tasks.failures import backoff_s, classify
from worker.tasks.family_cache import get_family
from worker.tasks.heartbeat import Heartbeat
from worker.tasks.progress import ClaimLost, JobCancelled, ProgressWriter

if TYPE_CHECKING:
    from worker.unclip.family import Family

log = logging.getLogger(__name__)

Outcome = Literal["done", "duplicate", "cancelled", "lost", "failed"]


@dataclass(frozen=True)
class StageOutput:
    """What a stage produced: the key of its stored output, or the final images."""

    output_key: str | None = None
    images: list[ImageRecord] = field(default_factory=list)
    publish: bool = True  # False keeps the images from clients (the output check holds them)


@dataclass(frozen=True)
class Resources:
    """Per-process connections, built lazily in the process that runs tasks (after fork)."""

    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage


class RenderTask(Task):  # type: ignore[misc]
    """Base of the three stage tasks; one instance per worker process."""

    stage: ClassVar[Stage]
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    typing = False  # kwargs are checked by the claim, not by Celery's signature check
    _resources: ClassVar[Resources | None] = None

    # ---- per-process caches -------------------------------------------------------------
    @classmethod
    def resources(cls) -> Resources:
        if RenderTask._resources is None:
            settings = get_settings()
            RenderTask._resources = Resources(
                settings=settings,
                sessions=make_sessionmaker(make_engine(settings)),
                storage=make_storage(settings),
            )
        return RenderTask._resources

    @classmethod
    def family(cls) -> Family:
        """The model family, loaded once per process (shared by the three stages)."""
        return get_family(cls.resources().settings)

    def worker_id(self) -> str:
        host = getattr(self.request, "hostname", None) or socket.gethostname()
        return f"{host}:{os.getpid()}"

    # ---- the stage body, implemented by each task ----------------------------------------
    def render(self, job: Job, claim: Claim, progress: ProgressWriter) -> StageOutput:
        raise NotImplementedError

    # ---- the skeleton around it ------------------------------------------------------------
    def run(self, job_id: str, attempt: int = 0, **_: Any) -> Outcome:
        """Run this stage for `job_id` (`attempt` is informational: the database decides)."""
        res = self.resources()
        claim = self._claim_or_retry(res, job_id)
        if claim is None:
            return "duplicate"
        progress = ProgressWriter(res.sessions, claim, interval_s=res.settings.progress_interval_s)
        try:
            with Heartbeat(res.sessions, claim, interval_s=res.settings.heartbeat_interval_s):
                self.family()  # loaded once per process; a broken family fails the job, with why
                with res.sessions() as session:
                    job = session.get_one(Job, job_id)
                output = self.render(job, claim, progress)
            with res.sessions.begin() as session:
                completed = complete_stage(
                    session,
                    claim,
                    output_key=output.output_key,
                    images=output.images,
                    publish=output.publish,
                )
        except JobCancelled as stop:  # a client's cancel, or moderation holding the job
            return self._cancelled(res, claim, stop)
        except ClaimLost as exc:
            log.warning("%s: %s; leaving the job to its new owner", self.name, exc)
            return "lost"
        except Exception as exc:
            return self._failed(res, claim, exc)
        if not completed:
            return self._after_lost_completion(res, claim)
        self._enqueue_next(res, claim)
        log.info("job %s: %s done (attempt %d)", job_id, self.stage, claim.attempt)
        return "done"

    def _claim_or_retry(self, res: Resources, job_id: str) -> Claim | None:
        """Claim; when the database cannot be reached, come back later instead of dropping."""
        try:
            return self._claim(res, job_id)
        except Exception as exc:
            failure = classify(exc)
            if not failure.transient:
                raise
            countdown = backoff_s(self.request.retries or 0)
            log.warning("job %s: cannot claim %s (%s); retrying in %.0f s", job_id,
                        self.stage, failure.message, countdown)  # fmt: skip
            raise self.retry(kwargs={"job_id": job_id}, countdown=countdown, max_retries=None,
                             exc=exc) from exc  # fmt: skip

    def _claim(self, res: Resources, job_id: str) -> Claim | None:
        with res.sessions.begin() as session:
            claim = claim_stage(
                session,
                job_id=job_id,
                stage=self.stage,
                worker_id=self.worker_id(),
                stale_after_s=res.settings.heartbeat_stale_s,
                max_attempts=res.settings.max_attempts,
            )
            held_since = None if claim else live_holder(session, job_id=job_id, stage=self.stage)
        if claim is None and held_since is not None:
            self._look_again_later(res, job_id, held_since)
        if claim is None:
            log.info(
                "job %s: %s not claimable (duplicate delivery, or the job moved on); "
                "acknowledging without work",
                job_id,
                self.stage,
            )
        return claim

    def _look_again_later(self, res: Resources, job_id: str, heartbeat_at: datetime) -> None:
        """Another worker holds the stage. If it died (its pool child killed, the message
        re-queued at once), only a delivery after its heartbeat goes stale can take over;
        if it lives, that later delivery finds the job moved on and does nothing."""
        stale_at = heartbeat_at + timedelta(seconds=res.settings.heartbeat_stale_s)
        countdown = max(1.0, (stale_at - utcnow()).total_seconds() + 1.0)
        log.info(
            "job %s: %s is held by another worker; looking again in %.0f s", job_id,
            self.stage, countdown,
        )  # fmt: skip
        raise self.retry(kwargs={"job_id": job_id}, countdown=countdown, max_retries=None)

    def _enqueue_next(self, res: Resources, claim: Claim) -> None:
        following = next_stage(claim.stage)
        if following is None:
            return
        # A publish failure leaves the job at the next stage without a message; the sweeper
        # re-publishes such rows, so it is logged, not raised (the stage itself is done).
        try:
            enqueue_stage(self.app, claim.job_id, following, claim.attempt)
        except Exception:
            log.exception("job %s: could not publish %s", claim.job_id, following)

    def _cancelled(self, res: Resources, claim: Claim, stop: Exception | None = None) -> Outcome:
        with res.sessions.begin() as session:
            close_cancelled(session, claim)
        log.info("job %s: %s stopped (%s)", claim.job_id, claim.stage, stop or "cancelled")
        return "cancelled"

    def _after_lost_completion(self, res: Resources, claim: Claim) -> Outcome:
        with res.sessions() as session:
            status = job_status(session, claim.job_id)
        if status == JobStatus.cancelled:
            return self._cancelled(res, claim)
        log.warning("job %s: %s finished but the claim was lost", claim.job_id, claim.stage)
        return "lost"

    def _failed(self, res: Resources, claim: Claim, exc: Exception) -> Outcome:
        failure = classify(exc)
        log.error("job %s: %s failed: %s", claim.job_id, claim.stage, failure.message, exc_info=exc)
        countdown = backoff_s(self.request.retries or 0)
        try:
            with res.sessions.begin() as session:
                tried = count_stage_attempts(session, job_id=claim.job_id, stage=claim.stage)
                retry = failure.transient and tried < res.settings.max_attempts
                fail_stage(
                    session,
                    claim,
                    error_code=failure.code,
                    error_message=failure.message,
                    retry=retry,
                )
        except Exception:
            # The database itself is down: the claim stays held until its heartbeat goes
            # stale, so the retry must come after that to be able to claim.
            log.exception("job %s: could not record the failure", claim.job_id)
            retry, countdown = True, res.settings.heartbeat_stale_s + countdown
        if retry:
            raise self.retry(
                kwargs={"job_id": claim.job_id, "attempt": claim.attempt},
                countdown=countdown,
                max_retries=res.settings.max_attempts,
                exc=exc,
            )
        return "failed"
