"""RenderRequest: the worker main process's side of a stage task (Celery's custom Request class).

It runs where the pool child's fate is known. When the child running a stage is lost (killed,
crashed) or killed by the hard time limit, the attempt is known dead: its claim is released
here at once (the attempt counts), so the message Celery re-queues is claimed in seconds
instead of after the heartbeat goes stale. When a task reports WorkerUnhealthy, this worker
stops consuming its queues, leaving the jobs to healthy workers.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from billiard.exceptions import WorkerLostError
from celery.worker.request import Request

from shared.db.claims import release_dead_worker
from shared.db.engine import make_engine
from shared.settings import get_settings
from worker.tasks.health import WorkerUnhealthy

log = logging.getLogger(__name__)

RELEASE_WAIT_S = 3.0

# The worker's consumer, captured by the ConsumerHandle bootstep (see app.py).
_consumer: Any = None


def set_consumer(consumer: Any) -> None:
    global _consumer
    _consumer = consumer


def stop_consuming(reason: str) -> list[str]:
    """Cancel every queue this worker consumes; the names cancelled."""
    if _consumer is None or _consumer.task_consumer is None:
        log.error("unhealthy (%s) but no consumer to cancel", reason)
        return []
    names = [queue.name for queue in _consumer.task_consumer.queues]
    for name in names:
        _consumer.cancel_task_queue(name)
    log.error("unhealthy: stopped consuming %s: %s", ",".join(names), reason)
    return names


def release_attempt(job_id: str, stage: str, worker_id: str, why: str) -> bool:
    """Release the claim `worker_id` held (its process is dead); True if one was released."""
    from sqlalchemy.orm import Session

    # A short-lived engine: no pooled connection may outlive this call, since pool processes
    # forked from this one later would share it.
    engine = make_engine(get_settings())
    try:
        with Session(engine) as session, session.begin():
            released = release_dead_worker(
                session, job_id=job_id, stage=stage, worker_id=worker_id, error=why
            )
    finally:
        engine.dispose()
    if released is not None:
        log.warning("job %s: %s attempt %d of %s released at once: %s", job_id, stage,
                    released.attempt, worker_id, why)  # fmt: skip
    return released is not None


def _unwrap(exc: BaseException) -> BaseException:
    inner = getattr(exc, "exc", None)  # celery's ExceptionWithTraceback
    return inner if isinstance(inner, BaseException) else exc


class RenderRequest(Request):  # type: ignore[misc]
    """A stage task's request in the worker's main process."""

    def _release_dead_attempt(self, why: str) -> None:
        job_id = (self.kwargs or {}).get("job_id")
        stage = getattr(self.task, "stage", None)
        if not job_id or stage is None or self.worker_pid is None:
            return
        worker_id = f"{self.hostname}:{self.worker_pid}"

        def release() -> None:
            try:
                release_attempt(str(job_id), str(stage), worker_id, why)
            except Exception:
                log.exception("job %s: could not release the dead attempt; the sweeper will",
                              job_id)  # fmt: skip

        # Bounded: a hung database must not stall the worker's event loop.
        thread = threading.Thread(target=release, name=f"release-{job_id}", daemon=True)
        thread.start()
        thread.join(RELEASE_WAIT_S)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        if not soft:
            self._release_dead_attempt(f"time_limit: killed at the hard time limit ({timeout} s)")
        super().on_timeout(soft, timeout)

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        exc = _unwrap(exc_info.exception)
        if isinstance(exc, (WorkerLostError, SystemExit, KeyboardInterrupt)):
            self._release_dead_attempt(f"worker_lost: {type(exc).__name__}: {exc}")
        elif isinstance(exc, WorkerUnhealthy) or type(exc).__name__ == WorkerUnhealthy.__name__:
            stop_consuming(str(exc))
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)
