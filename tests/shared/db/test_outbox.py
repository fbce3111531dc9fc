"""The stage outbox: recorded in the caller's transaction, taken once, given back on failure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.models import OutboxMessage
from shared.db.outbox import (
    mark_published,
    publish_failed,
    purge_published,
    record_message,
    take_due,
)

Sessions = sessionmaker[Session]


def _count(sessions: Sessions) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


def test_message_is_rolled_back_with_its_transaction(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    try:
        with db_sessions.begin() as session:
            record_message(session, job_id=job_id, stage="decoder", attempt=1, reason="next_stage")
            raise RuntimeError("the stage's completion failed")
    except RuntimeError:
        pass
    assert _count(db_sessions) == 0


def test_a_due_message_is_taken_once(db_sessions: Sessions, make_job: Callable[..., str]) -> None:
    job_id = make_job()
    with db_sessions.begin() as session:
        message = record_message(session, job_id=job_id, stage="prior", attempt=0, reason="x")
    later = utcnow() + timedelta(seconds=10)
    with db_sessions.begin() as session:
        assert take_due(session, grace_s=5, limit=10) == []  # still within its grace
        assert [m.id for m in take_due(session, grace_s=5, limit=10, now=later)] == [message.id]
        assert take_due(session, grace_s=5, limit=10, now=later) == []
        assert not mark_published(session, message.id)  # already taken


def test_a_delayed_message_waits_for_its_next_attempt_at(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    with db_sessions.begin() as session:
        record_message(session, job_id=job_id, stage="prior", attempt=1, reason="retry",
                       delay_s=60)  # fmt: skip
    with db_sessions.begin() as session:
        soon = utcnow() + timedelta(seconds=30)
        assert take_due(session, grace_s=0, limit=10, now=soon) == []
        due = utcnow() + timedelta(seconds=61)
        assert len(take_due(session, grace_s=0, limit=10, now=due)) == 1


def test_a_failed_publish_is_given_back_and_published_rows_are_purged(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    now = utcnow()
    with db_sessions.begin() as session:
        message = record_message(
            session, job_id=job_id, stage="prior", attempt=0, reason="x", now=now
        )
        (taken,) = take_due(session, grace_s=0, limit=10, now=now)
        publish_failed(session, taken.id, error="refused", retry_in_s=30, now=now)
    with db_sessions.begin() as session:
        assert take_due(session, grace_s=0, limit=10, now=now) == []
        (again,) = take_due(session, grace_s=0, limit=10, now=now + timedelta(seconds=31))
        assert again.id == message.id
        assert purge_published(session, older_than_s=3600, now=now + timedelta(hours=2)) == 1
    assert _count(db_sessions) == 0
