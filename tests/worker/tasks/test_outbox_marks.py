"""Published outbox messages: marked in the worker's next transaction, or by the timer."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import OutboxMessage
from shared.db.outbox import record_message
from worker.tasks.outbox_marks import PublishedMarks

Sessions = sessionmaker[Session]


def _message(sessions: Sessions, job_id: str) -> str:
    with sessions.begin() as session:
        return record_message(
            session, job_id=job_id, stage="decoder", attempt=1, reason="next_stage"
        ).id


def _published(sessions: Sessions, message_id: str) -> bool:
    with sessions() as session:
        return session.get_one(OutboxMessage, message_id).published_at is not None


def test_marks_ride_on_the_callers_transaction(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    marks = PublishedMarks(flush_after_s=60.0)
    ids = [_message(db_sessions, make_job()) for _ in range(2)]
    for message_id in ids:
        marks.add(db_sessions, message_id)
    assert marks.pending() == 2 and not any(_published(db_sessions, m) for m in ids)
    with db_sessions.begin() as session:
        assert marks.mark_in(session) == 2
    assert marks.pending() == 0 and all(_published(db_sessions, m) for m in ids)


def test_the_timer_marks_what_no_transaction_did(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    marks = PublishedMarks(flush_after_s=0.05)
    message_id = _message(db_sessions, make_job())
    marks.add(db_sessions, message_id)
    deadline = time.monotonic() + 10.0
    while not _published(db_sessions, message_id) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _published(db_sessions, message_id) and marks.pending() == 0
