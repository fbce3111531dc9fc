"""The stage outbox: record a stage message inside a transaction, publish it after the commit.

record_message() adds the row in the caller's transaction (the one completing a stage or
releasing a claim), so the hand-off to the next stage is committed with the state change
itself. After the commit the caller publishes and calls mark_published(). A row left
unpublished (the broker refused, the process died) is taken by the sweeper: take_due()
claims rows with one conditional UPDATE each, so several sweepers never publish one twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shared.db.base import rowcount, utcnow
from shared.db.models import OutboxMessage
from shared.db.states import Stage

MAX_ERROR_CHARS = 1000


@dataclass(frozen=True)
class PendingMessage:
    """A stage message to publish: render.<stage> for the job."""

    id: str
    job_id: str
    stage: Stage
    attempt: int


def record_message(
    session: Session,
    *,
    job_id: str,
    stage: Stage | str,
    attempt: int,
    reason: str,
    delay_s: float = 0.0,
    now: datetime | None = None,
) -> PendingMessage:
    """Add an unpublished message in the caller's transaction, due `delay_s` from now."""
    now = now or utcnow()
    row = OutboxMessage(
        job_id=job_id,
        stage=Stage(stage).value,
        attempt=attempt,
        reason=reason,
        created_at=now,
        next_attempt_at=now + timedelta(seconds=delay_s),
        publish_attempts=0,
    )
    session.add(row)
    session.flush()
    return PendingMessage(id=row.id, job_id=job_id, stage=Stage(stage), attempt=attempt)


def mark_published(session: Session, message_id: str, *, now: datetime | None = None) -> bool:
    """Mark a message published; False when it already was (by another publisher)."""
    result = session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.published_at.is_(None))
        .values(published_at=now or utcnow(), publish_attempts=OutboxMessage.publish_attempts + 1)
    )
    return rowcount(result) == 1


def take_due(
    session: Session, *, grace_s: float, limit: int, now: datetime | None = None
) -> list[PendingMessage]:
    """Claim unpublished messages that are due and older than `grace_s` (their own publisher
    had that long), marking them published; the caller publishes them and gives back any
    that fail with publish_failed()."""
    now = now or utcnow()
    query = (
        select(OutboxMessage.id, OutboxMessage.job_id, OutboxMessage.stage, OutboxMessage.attempt)
        .where(
            OutboxMessage.published_at.is_(None),
            OutboxMessage.next_attempt_at <= now,
            OutboxMessage.created_at <= now - timedelta(seconds=grace_s),
        )
        .order_by(OutboxMessage.next_attempt_at)
        .limit(limit)
    )
    taken = []
    for message_id, job_id, stage, attempt in session.execute(query).all():
        if mark_published(session, message_id, now=now):
            taken.append(PendingMessage(message_id, job_id, Stage(stage), attempt))
    return taken


def publish_failed(
    session: Session, message_id: str, *, error: str, retry_in_s: float, now: datetime | None = None
) -> None:
    """Put a taken message back, due again in `retry_in_s`, with the broker's error."""
    now = now or utcnow()
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(
            published_at=None,
            next_attempt_at=now + timedelta(seconds=retry_in_s),
            last_error=error[:MAX_ERROR_CHARS],
        )
    )


def purge_published(session: Session, *, older_than_s: float, now: datetime | None = None) -> int:
    """Delete messages published more than `older_than_s` ago; how many went."""
    cutoff = (now or utcnow()) - timedelta(seconds=older_than_s)
    result = session.execute(
        delete(OutboxMessage).where(
            OutboxMessage.published_at.is_not(None), OutboxMessage.published_at < cutoff
        )
    )
    return rowcount(result)
