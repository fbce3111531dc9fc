"""The sweeper: re-publish every job that should be moving but has no live message or claim.

Each pass (every settings.sweeper.interval_s):
1. claims whose heartbeat went stale (heartbeat_stale_s): released and re-queued, or, once the
   stage was tried max_attempts times, the job fails with the reason;
2. queued or between-stage jobs with no claim and no pending message for
   settings.sweeper.stuck_after_s (a message lost with Redis, a publish that never happened);
3. outbox messages recorded but never published (the broker refused after the commit).
Then housekeeping: published outbox rows and expired Idempotency-Keys are purged, and the
retention settings (settings.retention) expire old finished jobs' files.
Every fix is a conditional UPDATE, so several sweepers can run at once; a duplicate message
is harmless, since a stage's claim turns a second delivery into a no-op.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.idempotency import delete_expired as delete_expired_keys
from shared.db.outbox import (
    PendingMessage,
    mark_published,
    publish_failed,
    purge_published,
    take_due,
)
from shared.db.sweeps import recover_stale_claim, requeue_stuck_job, stale_claims, stuck_jobs
from shared.retention import run_retention
from shared.settings import Settings
from shared.storage.base import Storage

log = logging.getLogger(__name__)

Publish = Callable[[PendingMessage], object]
BATCH = 200
# An outbox row's own publisher (the worker that committed it) gets this long first.
PUBLISH_GRACE_S = 5.0
PURGE_AFTER_S = 24 * 3600.0


@dataclass
class SweepReport:
    """What one pass did."""

    stale_requeued: int = 0
    stale_failed: int = 0
    stuck_requeued: int = 0
    outbox_published: int = 0
    publish_errors: int = 0
    expired: int = 0  # jobs whose files retention removed (shared/retention.py)

    def __bool__(self) -> bool:
        return any(vars(self).values())


class Sweeper:
    """One sweeper over a database and a publish function (enqueue_stage on a Celery app)."""

    def __init__(
        self, settings: Settings, *, sessions: sessionmaker[Session], publish: Publish,
        storage: Storage | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.publish = publish
        self.storage = storage  # retention deletes through it; None: no retention pass

    def sweep_once(self, now: datetime | None = None) -> SweepReport:
        """One pass over the three rules; returns what it did."""
        now = now or utcnow()
        report = SweepReport()
        for message in self._recover_stale(report, now):
            self._publish_recorded(report, message)
        for message in self._requeue_stuck(report, now):
            self._publish_recorded(report, message)
        self._publish_outbox(report, now)
        with self.sessions.begin() as session:
            purge_published(session, older_than_s=PURGE_AFTER_S, now=now)
            delete_expired_keys(session=session, now=now)  # Idempotency-Keys past their 24 h
        if self.storage is not None:
            with self.sessions.begin() as session:
                report.expired = run_retention(session, self.storage, self.settings, now=now)
        if report:
            log.info("sweeper: %s", report)
        return report

    def _recover_stale(self, report: SweepReport, now: datetime) -> list[PendingMessage]:
        stale_s, max_attempts = self.settings.heartbeat_stale_s, self.settings.max_attempts
        with self.sessions() as session:
            claims = stale_claims(session, stale_after_s=stale_s, limit=BATCH, now=now)
        messages = []
        for claim in claims:
            with self.sessions.begin() as session:
                outcome, message = recover_stale_claim(
                    session, claim, stale_after_s=stale_s, max_attempts=max_attempts, now=now
                )
            if outcome == "skipped":
                continue
            log.warning("sweeper: job %s: %s claim of %s went stale; %s", claim.job_id,
                        claim.stage, claim.worker_id, outcome)  # fmt: skip
            if message is None:
                report.stale_failed += 1
            else:
                report.stale_requeued += 1
                messages.append(message)
        return messages

    def _requeue_stuck(self, report: SweepReport, now: datetime) -> list[PendingMessage]:
        stuck_s = self.settings.sweeper.stuck_after_s
        with self.sessions() as session:
            jobs = stuck_jobs(session, stuck_after_s=stuck_s, limit=BATCH, now=now)
        messages = []
        for job in jobs:
            with self.sessions.begin() as session:
                message = requeue_stuck_job(session, job, stuck_after_s=stuck_s, now=now)
            if message is not None:
                log.warning("sweeper: job %s %s with no claim or message for %g s; re-queued",
                            job.job_id, job.status, stuck_s)  # fmt: skip
                report.stuck_requeued += 1
                messages.append(message)
        return messages

    def _publish_recorded(self, report: SweepReport, message: PendingMessage) -> None:
        """Publish a message this pass recorded; a failure leaves it for a later pass."""
        try:
            self.publish(message)
        except Exception as exc:
            report.publish_errors += 1
            log.warning("sweeper: could not publish %s for job %s: %s", message.stage,
                        message.job_id, exc)  # fmt: skip
            return
        with self.sessions.begin() as session:
            mark_published(session, message.id)

    def _publish_outbox(self, report: SweepReport, now: datetime) -> None:
        with self.sessions.begin() as session:
            taken = take_due(session, grace_s=PUBLISH_GRACE_S, limit=BATCH, now=now)
        for message in taken:
            try:
                self.publish(message)
            except Exception as exc:
                report.publish_errors += 1
                with self.sessions.begin() as session:
                    publish_failed(session, message.id, error=str(exc),
                                   retry_in_s=self.settings.sweeper.interval_s)  # fmt: skip
                continue
            report.outbox_published += 1

    def run_forever(self, stop: threading.Event) -> None:
        """Sweep every interval_s until `stop` is set; a failed pass is logged and retried."""
        interval = self.settings.sweeper.interval_s
        log.info("sweeper: every %g s (stuck after %g s, claims stale after %g s)", interval,
                 self.settings.sweeper.stuck_after_s, self.settings.heartbeat_stale_s)  # fmt: skip
        while not stop.is_set():
            try:
                self.sweep_once()
            except Exception:
                log.exception("sweeper: pass failed; trying again in %g s", interval)
            stop.wait(interval)


def make_sweeper(settings: Settings) -> Sweeper:
    """A sweeper on the settings' database and broker."""
    from shared.db.engine import make_engine, make_sessionmaker
    from shared.queue.celery_app import make_celery
    from shared.queue.dispatch import enqueue_stage
    from shared.storage.factory import make_storage

    celery = make_celery(settings)
    sessions = make_sessionmaker(make_engine(settings))

    def publish(message: PendingMessage) -> object:
        return enqueue_stage(celery, message.job_id, message.stage, message.attempt)

    return Sweeper(settings, sessions=sessions, publish=publish, storage=make_storage(settings))
