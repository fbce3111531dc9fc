"""RenderTask: claim the job, run one stage with the per-process family, store, advance, hand off.

Each stage task subclasses RenderTask and implements `render`. Everything around it is here:
the claim (a duplicate delivery is a no-op), the progress writer and cancel check, the
conditional completion with the next stage's message recorded in the same transaction
(shared/db/outbox.py) and published after the commit, and failures: a transient one records
a retry message due after a backoff, up to settings.max_attempts attempts of the stage as the
database counts them. A message that could not be published stays in the outbox, where the
sweeper (shared/sweeper.py, `unclip sweeper`) publishes it. A draining or unhealthy worker
hands its job back (claim released, message re-published) instead of finishing or failing it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from celery import Task
from sqlalchemy import inspect
from sqlalchemy.orm import Session, sessionmaker

from shared.db.claims import (
    RELEASED,
    Claim,
    ImageRecord,
    claim_stage,
    close_cancelled,
    complete_stage,
    count_stage_attempts,
    fail_stage,
    job_status,
    release_claim,
)
from shared.db.engine import POOL_SIZE, make_engine, make_sessionmaker
from shared.db.models import Job
from shared.db.outbox import PendingMessage, mark_published, record_message
from shared.db.states import JobStatus, Stage, next_stage
from shared.logging import bind_job
from shared.queue.dispatch import enqueue_stage
from shared.settings import Settings, get_settings
from shared.storage.base import Storage
from shared.storage.factory import make_storage
from worker.tasks import drain
from worker.tasks.batching import gather_batch
from worker.tasks.failures import backoff_s, classify
from worker.tasks.family_cache import get_family
from worker.tasks.health import WorkerUnhealthy, health
from worker.tasks.heartbeat import Heartbeat
from worker.tasks.outbox_marks import PublishedMarks
from worker.tasks.progress import ClaimLost, Drained, JobCancelled, ProgressWriter

if TYPE_CHECKING:
    from worker.unclip.family import Family

log = logging.getLogger(__name__)

Outcome = Literal["done", "duplicate", "cancelled", "lost", "failed", "retrying", "handed_back"]
STORAGE_UNAVAILABLE = "storage_unavailable"
# Pooled connections beyond one per job of a batch: heartbeats, the outbox-mark timer, reads.
SPARE_CONNECTIONS = 3


def fully_loaded(job: Job) -> bool:
    """Every column of the row is loaded (none expired), so a stage can read it detached."""
    state = inspect(job)
    return not (state.unloaded & _JOB_COLUMNS)


_JOB_COLUMNS = frozenset(column.key for column in inspect(Job).column_attrs)


@dataclass(frozen=True)
class StageOutput:
    """What a stage produced: the key of its stored output, or the final images."""

    output_key: str | None = None
    images: list[ImageRecord] = field(default_factory=list)
    publish: bool = True  # False keeps the images from clients (the output check holds them)
    # Written in the completing transaction, only if the stage completes (H-embed: the stage's
    # run record for the manifest, the prior's embedding ids).
    on_complete: Callable[[Session], object] | None = None


@dataclass(frozen=True)
class Resources:
    """Per-process connections, built lazily in the process that runs tasks (after fork)."""

    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage
    pid: int = field(default_factory=os.getpid)
    # Published outbox messages, marked in this process's next transaction.
    marks: PublishedMarks = field(default_factory=PublishedMarks)


class RenderTask(Task):  # type: ignore[misc]
    """Base of the three stage tasks; one instance per worker process."""

    stage: ClassVar[Stage]
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    typing = False  # kwargs are checked by the claim, not by Celery's signature check
    # Runs in the worker's main process: releases the claim of a lost or killed attempt.
    Request = "worker.tasks.request:RenderRequest"
    _resources: ClassVar[Resources | None] = None

    # ---- per-process caches -------------------------------------------------------------
    @classmethod
    def resources(cls) -> Resources:
        current = RenderTask._resources
        # A pool process forked after the main process built its own must not share them.
        if current is None or current.pid != os.getpid():
            settings = get_settings()
            # Every job of a batch runs its transactions in a thread of its own: a pool smaller
            # than that opened and closed a connection per transaction past its size. On
            # SQLite those threads take turns rather than sleep in SQLite's busy wait.
            pool_size = max(POOL_SIZE, settings.batch.max + SPARE_CONNECTIONS)
            engine = make_engine(settings, pool_size=pool_size, sqlite_turns=True)
            RenderTask._resources = current = Resources(
                settings=settings,
                sessions=make_sessionmaker(engine),
                storage=make_storage(settings),
            )
        return current

    @classmethod
    def takes_turns(cls) -> bool:
        """Whether this worker's pool processes take turns on the device for the model
        library's calls (settings.pipeline > 1, worker/tasks/device_turns.py)."""
        return cls.resources().settings.pipeline > 1

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

    def on_claimed(self, session: Session, job: Job) -> None:
        """In the claim's transaction, with the claimed row: what a stage records before it
        runs (nothing by default). Must not raise for a bad row: render reports those."""

    def batch_scope(self, jobs: Sequence[Job]) -> AbstractContextManager[None]:
        """Around a batch's run, given its jobs' rows: work a stage does once for all of them
        instead of once per job (nothing by default). Must not raise."""
        return nullcontext()

    # ---- the skeleton around it ------------------------------------------------------------
    def run(self, job_id: str, attempt: int = 0, **_: Any) -> Outcome:
        """Run this stage for `job_id` (`attempt` is informational: the database decides)."""
        res = self.resources()
        if not self._ready(res, job_id):
            return "handed_back"
        claimed = self._claim_or_retry(res, job_id)
        if claimed is None:
            return "duplicate"
        claim, job = claimed
        bind_job(attempt=claim.attempt)  # log lines of this run carry its claim's attempt
        # ---- dynamic batching (H-throughput): more waiting jobs, each run by _run_claimed ----
        batch = gather_batch(self, res, claim, job)
        if batch is not None:
            rows = {row.id: row for row in batch.jobs}  # as each claim left it: not read again
            with self.batch_scope(batch.jobs):
                return batch.run(lambda held: self._run_claimed(res, held, rows.get(held.job_id)))
        # ---- end of dynamic batching ----
        return self._run_claimed(res, claim, job)

    def _run_claimed(self, res: Resources, claim: Claim, job: Job | None = None) -> Outcome:
        """The claimed stage, from render to hand-off; `job` is the row as the claim left it
        (read again when not given, or when a column of it is not loaded)."""
        progress = ProgressWriter(
            res.sessions,
            claim,
            interval_s=res.settings.progress_interval_s,
            cancel_check_s=res.settings.cancel_check_interval_s,
        )
        try:
            with Heartbeat(res.sessions, claim, interval_s=res.settings.heartbeat_interval_s):
                if job is None or not fully_loaded(job):
                    with res.sessions() as session:
                        job = session.get_one(Job, claim.job_id)
                output = self.render(job, claim, progress)
            completed, following = self._complete(res, claim, output, progress)
        except JobCancelled as stop:  # a client's cancel, or moderation holding the job
            return self._cancelled(res, claim, stop)
        except ClaimLost as exc:
            log.warning("%s: %s; leaving the job to its new owner", self.name, exc)
            return "lost"
        except Drained as stop:
            return self._hand_back(res, claim, str(stop))
        except Exception as exc:
            return self._failed(res, claim, exc)
        if not completed:
            return self._after_lost_completion(res, claim)
        health.record_success()
        if following is not None:
            self._publish(res, following, soon=True)
        log.info("job %s: %s done (attempt %d)", claim.job_id, self.stage, claim.attempt)
        return "done"

    def _complete(
        self, res: Resources, claim: Claim, output: StageOutput, progress: ProgressWriter
    ) -> tuple[bool, PendingMessage | None]:
        """Write the last step's progress, advance the job and record the next stage's message,
        in one transaction."""
        following = next_stage(claim.stage)
        with res.sessions.begin() as session:
            res.marks.mark_in(session)
            completed = progress.finish(session) and complete_stage(
                session, claim, output_key=output.output_key, images=output.images,
                publish=output.publish,
            )  # fmt: skip
            if completed and output.on_complete is not None:
                output.on_complete(session)
            if not completed or following is None:
                return completed, None
            message = record_message(
                session, job_id=claim.job_id, stage=following, attempt=claim.attempt,
                reason="next_stage",
            )  # fmt: skip
        return True, message

    def _publish(
        self, res: Resources, message: PendingMessage, countdown: float = 0.0, *, soon: bool = False
    ) -> None:
        """Publish a committed outbox message and mark it published; on failure the sweeper
        publishes it. `soon` (a next stage's message, the hot path): the mark rides on this
        process's next transaction instead of one of its own (worker/tasks/outbox_marks.py)."""
        try:
            if countdown > 0:
                enqueue_stage(self.app, message.job_id, message.stage, message.attempt,
                              countdown=countdown)  # fmt: skip
            else:
                enqueue_stage(self.app, message.job_id, message.stage, message.attempt)
            if soon:
                res.marks.add(res.sessions, message.id)
            else:
                with res.sessions.begin() as session:
                    mark_published(session, message.id)
        except Exception:
            log.exception("job %s: could not publish %s; it stays in the outbox, where the "
                          "sweeper publishes it", message.job_id, message.stage)  # fmt: skip

    # ---- before the claim: is this worker fit to run the stage? -----------------------------
    def _ready(self, res: Resources, job_id: str) -> bool:
        """False when the job was handed back unclaimed (draining); raises WorkerUnhealthy
        after handing it back when this worker cannot do jobs."""
        if drain.draining():
            self._hand_back_unclaimed(res, job_id, "worker shutting down")
            return False
        if health.healthy:
            try:
                self.family()  # loaded once per process
            except Exception as exc:
                health.mark_unhealthy(f"{type(exc).__name__}: {exc}")
        if health.reason is not None:
            self._hand_back_unclaimed(res, job_id, health.reason)
            raise WorkerUnhealthy(health.reason)
        return True

    def _hand_back_unclaimed(self, res: Resources, job_id: str, why: str) -> None:
        with res.sessions.begin() as session:
            job = session.get(Job, job_id)
            if job is None:  # nothing to hand back (a message for a deleted job)
                return
            message = record_message(
                session, job_id=job_id, stage=self.stage, attempt=job.attempt, reason="handed_back"
            )
        log.warning("job %s: %s handed back unclaimed: %s", job_id, self.stage, why)
        self._publish(res, message)

    def _hand_back(self, res: Resources, claim: Claim, why: str) -> Outcome:
        """Release the claim (not counted as an attempt) and re-publish the stage's message."""
        with res.sessions.begin() as session:
            if not release_claim(session, claim, status=RELEASED, error=why):
                return "lost"
            message = record_message(
                session, job_id=claim.job_id, stage=claim.stage, attempt=claim.attempt,
                reason="handed_back",
            )  # fmt: skip
        log.warning("job %s: %s handed back: %s", claim.job_id, claim.stage, why)
        self._publish(res, message)
        return "handed_back"

    # ---- the claim -------------------------------------------------------------------------
    def _claim_or_retry(self, res: Resources, job_id: str) -> tuple[Claim, Job] | None:
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
            # Celery's counter only paces this wait; no attempt was made, none is counted.
            raise self.retry(kwargs={"job_id": job_id}, countdown=countdown, max_retries=None,
                             exc=exc) from exc  # fmt: skip

    def _claim(self, res: Resources, job_id: str) -> tuple[Claim, Job] | None:
        """The claim and the job's row as it left it, read in the claim's transaction."""
        with res.sessions.begin() as session:
            res.marks.mark_in(session)
            claim = claim_stage(
                session,
                job_id=job_id,
                stage=self.stage,
                worker_id=self.worker_id(),
                stale_after_s=res.settings.heartbeat_stale_s,
                max_attempts=res.settings.max_attempts,
            )
            job = None if claim is None else session.get_one(Job, job_id)
            if job is not None:
                self.on_claimed(session, job)
        if claim is None or job is None:
            # Another live worker holds the stage, or the job moved on. A holder that dies is
            # released by its worker at once, or by the sweeper once its heartbeat is stale.
            log.info(
                "job %s: %s not claimable (duplicate delivery, or the job moved on); "
                "acknowledging without work",
                job_id,
                self.stage,
            )
            return None
        return claim, job

    # ---- endings other than done -----------------------------------------------------------
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
        if failure.code == STORAGE_UNAVAILABLE and health.record_storage_failure(
            claim.job_id, failure.message
        ):
            self._hand_back(res, claim, health.reason or failure.message)
            raise WorkerUnhealthy(health.reason) from exc
        try:
            retry = self._record_failure(res, claim, failure.code, failure.message,
                                         failure.transient)  # fmt: skip
        except Exception:
            # The database itself is down: the claim stays held until its heartbeat goes
            # stale (or the sweeper releases it), so come back after that.
            log.exception("job %s: could not record the failure", claim.job_id)
            countdown = res.settings.heartbeat_stale_s + backoff_s(0)
            raise self.retry(kwargs={"job_id": claim.job_id, "attempt": claim.attempt},
                             countdown=countdown, max_retries=None, exc=exc) from exc  # fmt: skip
        if retry is None:
            return "failed"
        message, delay = retry
        self._publish(res, message, countdown=delay)
        return "retrying"

    def _record_failure(
        self, res: Resources, claim: Claim, code: str, message: str, transient: bool
    ) -> tuple[PendingMessage, float] | None:
        """Fail the attempt; while the database counts fewer than max_attempts attempts of a
        transient failure, record the retry's message due after a backoff."""
        with res.sessions.begin() as session:
            tried = count_stage_attempts(session, job_id=claim.job_id, stage=claim.stage)
            retry = transient and tried < res.settings.max_attempts
            fail_stage(session, claim, error_code=code, error_message=message, retry=retry)
            if not retry:
                return None
            delay = backoff_s(max(tried - 1, 0))
            pending = record_message(
                session, job_id=claim.job_id, stage=claim.stage, attempt=claim.attempt,
                reason="retry", delay_s=delay,
            )  # fmt: skip
        return pending, delay
