"""Send a stage task by name after the job row is committed; a dead broker is QueueUnavailable.

Message contract (what worker/tasks implement): task `render.<stage>` on queue `<stage>`,
kwargs {"job_id": str, "attempt": int} where attempt is the job's attempt counter when the
message was sent (informational: the task claims the job from the database, which decides).
"""

from __future__ import annotations

from typing import Protocol

from celery import Celery
from kombu.exceptions import KombuError

from shared.db.states import Stage
from shared.errors import QueueUnavailable
from shared.queue.celery_app import PUBLISH_RETRY_POLICY, task_name

PING_TIMEOUT_S = 2.0


def _broker_errors() -> tuple[type[BaseException], ...]:
    """What a broker that is down or hung raises: kombu's errors, sockets, redis-py's own."""
    try:
        from redis.exceptions import RedisError
    except ImportError:  # the filesystem broker needs no redis client
        return (KombuError, OSError)
    return (KombuError, OSError, RedisError)


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
    try:
        celery.send_task(
            task_name(stage.value),
            kwargs={"job_id": job_id, "attempt": attempt},
            queue=stage.value,
            routing_key=stage.value,
            task_id=task_id,
            countdown=countdown,
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
        )
    except _broker_errors() as exc:
        raise QueueUnavailable(
            f"the broker did not take render.{stage} for job {job_id}: {exc}",
            retry_after_s=retry_after_s,
        ) from exc
    return task_id


def check_broker(celery: Celery, *, retry_after_s: int = 30) -> None:
    """Raise QueueUnavailable unless a connection to the broker can be made now."""
    try:
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=PING_TIMEOUT_S)
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
