"""Is this worker process fit to do jobs? A broken family or storage makes it hand jobs back.

A worker that cannot load its model family, or whose storage failed on several jobs in a
row, would otherwise grab and fail every job in its queues while a healthy worker idles.
Instead it marks itself unhealthy, hands the job back and raises WorkerUnhealthy, which the
worker's main process answers by no longer consuming its queues (worker/tasks/request.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Storage failures on this many jobs in a row (and no success between) mean the storage,
# not the jobs, is broken.
STORAGE_FAILURES_UNHEALTHY = 3


class WorkerUnhealthy(Exception):
    """This worker cannot do jobs; it handed the job back and stops consuming its queues."""


@dataclass
class Health:
    """The health of this process (one instance per process, see `health` below)."""

    reason: str | None = None
    # The jobs whose storage failed since the last success: one job failing again and again
    # (a poison job) is that job's problem and counts once.
    storage_failed_jobs: set[str] = field(default_factory=set)

    @property
    def healthy(self) -> bool:
        return self.reason is None

    def mark_unhealthy(self, reason: str) -> None:
        if self.reason is None:
            log.error("worker unhealthy, handing jobs back and consuming no more: %s", reason)
        self.reason = reason

    def record_success(self) -> None:
        self.storage_failed_jobs.clear()

    def record_storage_failure(self, job_id: str, message: str) -> bool:
        """Count a storage failure of `job_id`; True once storage failed on too many distinct
        jobs with no success between (now unhealthy)."""
        self.storage_failed_jobs.add(job_id)
        failed = len(self.storage_failed_jobs)
        if failed >= STORAGE_FAILURES_UNHEALTHY:
            self.mark_unhealthy(f"storage failed on {failed} jobs in a row; last: {message}")
            return True
        return False


health = Health()
