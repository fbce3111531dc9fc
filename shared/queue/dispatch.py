"""Send a stage task by name after the job row is committed; a dead broker is QueueUnavailable.

Message contract (what worker/tasks implement): task `render.<stage>` on queue `<stage>`,
kwargs {"job_id": str, "attempt": int} where attempt is the job's attempt counter when the
message was sent (informational: the task claims the job from the database, which decides).
"""

from __future__ import annotations

import time
from typing import Protocol

from celery import Celery
from kombu.exceptions import KombuError

from shared.db.states import Stage
from shared.errors import QueueUnavailable
from shared.queue.celery_app import task_name

# A publish the broker refused or reset is tried once more after this pause (a restarting
# broker, a stale pooled connection); one that timed out is not: the broker is hung, and a
# second try would double the wait (settings.broker_socket_timeout_s) before the 503.
PUBLISH_TRIES = 2
PUBLISH_RETRY_PAUSE_S = 0.1


def _broker_errors() -> tuple[type[BaseException], ...]:
    """What a broker that is down or hung raises: kombu's errors, sockets, redis-py's own."""
    try:
        from redis.exceptions import RedisError
    except ImportError:  # the filesystem broker needs no redis client
        return (KombuError, OSError)
    return (KombuError, OSError, RedisError)


def timed_out(exc: BaseException) -> bool:
    """Whether a broker error is a timeout (a hung broker), looking through kombu's wrapping."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError) or type(seen).__name__ == "TimeoutError":
            return True  # the builtin (socket.timeout) or redis-py's TimeoutError
        seen = seen.__cause__ or seen.__context__
    return False


def message_id(job_id: str, stage: Stage | str, attempt: int) -> str:
    """The Celery task id of a stage message: the job id, stage and attempt."""
    return f"{job_id}.{Stage(stage).value}.{attempt}"


def enqueue_stage(
    celery: Celery,
    job_id: str,
    stage: Stage | str,
    attempt: int,
    *,
    retry_after_s: int = 30,
    countdown: float | None = None,
) -> str:
    """Publish render.<stage> to queue <stage> for `job_id`; returns the task id.

    `countdown` delays delivery (a retry's backoff); keep it short: a worker holds such a
    message unacknowledged until it is due. Long waits belong in the outbox's next_attempt_at.
    """
    stage = Stage(stage)
    task_id = message_id(job_id, stage, attempt)
    for tries_left in range(PUBLISH_TRIES - 1, -1, -1):
        try:
            celery.send_task(
                task_name(stage.value),
                kwargs={"job_id": job_id, "attempt": attempt},
                queue=stage.value,
                routing_key=stage.value,
                task_id=task_id,
                countdown=countdown,
                retry=False,  # the retry is this loop's: none after a timeout
            )
            return task_id
        except _broker_errors() as exc:
            if tries_left and not timed_out(exc):
                time.sleep(PUBLISH_RETRY_PAUSE_S)
                continue
            raise QueueUnavailable(
                f"the broker did not take render.{stage} for job {job_id}: {exc}",
                retry_after_s=retry_after_s,
            ) from exc
    raise AssertionError("unreachable: the last try returns or raises")


def check_broker(celery: Celery, *, retry_after_s: int = 30) -> None:
    """Raise QueueUnavailable unless a connection to the broker can be made now (one try,
    bounded by the broker's connect and socket timeouts)."""
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=0)
    except _broker_errors() as exc:
        raise QueueUnavailable(
            f"the broker is unreachable: {exc}", retry_after_s=retry_after_s
        ) from exc


class StageQueue(Protocol):
    """What the API needs of a queue; tests pass a fake that records what was sent."""

    def enqueue(self, job_id: str, stage: Stage, attempt: int) -> str:
        """Publish one stage message; raise QueueUnavailable when the broker refuses."""
        ...

    def check(self) -> None:
        """Raise QueueUnavailable when the broker is unreachable."""
        ...


class CeleryStageQueue:
    """A StageQueue over a Celery app."""

    def __init__(self, celery: Celery, *, retry_after_s: int = 30) -> None:
        self.celery = celery
        self.retry_after_s = retry_after_s

    def enqueue(self, job_id: str, stage: Stage, attempt: int) -> str:
        return enqueue_stage(self.celery, job_id, stage, attempt, retry_after_s=self.retry_after_s)

    def check(self) -> None:
        check_broker(self.celery, retry_after_s=self.retry_after_s)
