"""The delivery outbox: claims share slots between receivers, attempt numbers only grow (also
across redeliveries), a lapsed claim cannot overwrite its successor, redelivery never doubles
a send in flight."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from shared.db import webhooks
from shared.db.base import utcnow
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.job_events import record_event
from shared.db.models import Job, WebhookAttempt, WebhookDelivery
from shared.db.webhooks import (
    AttemptOutcome,
    claim_due,
    deliveries_for_job,
    record_attempt,
    redeliver,
)
from shared.errors import Conflict
from shared.settings import Settings
from shared.webhooks.schedule import MAX_ATTEMPTS

LEASE_S = 40.0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def outbox(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[sessionmaker[Session], Callable[..., str]]]:
    """Sessions on a migrated database with no deliveries yet, and a maker of job rows."""
    if request.param == "sqlite":
        yield request.getfixturevalue("db_sessions"), request.getfixturevalue("make_job")
        return
    url = request.getfixturevalue("postgres_url")
    engine = make_engine(Settings(data_dir=tmp_path, database_url=url))
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:  # what other tests left in the shared database
        session.execute(delete(WebhookDelivery))

    def make_job(**fields: object) -> str:
        with sessions.begin() as session:
            job = Job(kind="generate", prompt="a red circle", n=1, size="64x64", seed=7,
                      status="queued", attempt=0, **fields)  # fmt: skip
            session.add(job)
            session.flush()
            return job.id

    yield sessions, make_job
    engine.dispose()


def _job_with_delivery(make_job: Callable[..., str], sessions: sessionmaker[Session],
                       url: str = "https://hooks.example/x") -> str:  # fmt: skip
    job_id = make_job(webhook_url=url)
    with sessions.begin() as session:
        record_event(session, job_id, "failed", {"code": "x"})
    return job_id


def _claim(sessions: sessionmaker[Session], now: datetime | None = None) -> list[WebhookDelivery]:
    with sessions.begin() as session:
        claimed = claim_due(session, now=now or utcnow(), limit=16, lease_s=LEASE_S)
        session.expunge_all()
    return claimed


def _claimed_twice(
    sessions: sessionmaker[Session],
) -> tuple[WebhookDelivery, WebhookDelivery]:
    """The one delivery claimed, then claimed again once that first lease has lapsed."""
    [stale] = _claim(sessions)
    [fresh] = _claim(sessions, now=utcnow() + timedelta(seconds=LEASE_S + 1))
    return stale, fresh


def _record(sessions: sessionmaker[Session], delivery: WebhookDelivery, code: int | None,
            final: bool = False) -> bool:  # fmt: skip
    outcome = AttemptOutcome(code, None if code else "ConnectError: refused", utcnow(), 5,
                             final=final)  # fmt: skip
    with sessions.begin() as session:
        return record_attempt(session, delivery, outcome)


def _log(sessions: sessionmaker[Session], job_id: str) -> tuple[WebhookDelivery, list[int]]:
    with sessions() as session:
        [(delivery, attempts)] = deliveries_for_job(session, job_id)
    return delivery, [a.number for a in attempts]


def _make_due(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.status == "pending")
                        .values(next_attempt_at=utcnow() - timedelta(seconds=1)))  # fmt: skip


def test_one_receiver_gets_at_most_its_share_of_a_claim(
    outbox: tuple[sessionmaker[Session], Callable[..., str]],
) -> None:
    db_sessions, make_job = outbox
    for i in range(6):
        _job_with_delivery(make_job, db_sessions, f"https://a.example/{i}")
    _job_with_delivery(make_job, db_sessions, "https://b.example/hook")  # due last
    with db_sessions.begin() as session:
        first = claim_due(session, now=utcnow(), limit=16, lease_s=LEASE_S, per_target=4)
        assert sorted(d.url.split("/")[2] for d in first) == ["a.example"] * 4 + ["b.example"]
        busy = {"a.example:443": 3}  # three already being sent by this dispatcher
        second = claim_due(session, now=utcnow(), limit=16, lease_s=LEASE_S, per_target=4,
                           busy=busy)  # fmt: skip
        assert [d.url for d in second] == ["https://a.example/4"]


def test_a_backlog_for_a_busy_receiver_does_not_hide_the_next_receiver(
    outbox: tuple[sessionmaker[Session], Callable[..., str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    db_sessions, make_job = outbox
    monkeypatch.setattr(webhooks, "CLAIM_PAGE", 3)  # due rows are read three at a time
    for i in range(7):
        _job_with_delivery(make_job, db_sessions, f"https://a.example/{i}")
    _job_with_delivery(make_job, db_sessions, "https://b.example/hook")  # eighth in line
    with db_sessions.begin() as session:
        claimed = claim_due(session, now=utcnow(), limit=2, lease_s=LEASE_S, per_target=4,
                            busy={"a.example:443": 4})  # fmt: skip
        assert [d.url for d in claimed] == ["https://b.example/hook"]
        [first] = claim_due(session, now=utcnow(), limit=1, lease_s=LEASE_S, per_target=4)
        assert first.url == "https://a.example/0"  # the longest due goes first


def test_a_jobs_deliveries_go_one_at_a_time_in_order(
    outbox: tuple[sessionmaker[Session], Callable[..., str]],
) -> None:
    db_sessions, make_job = outbox
    job_id = make_job(webhook_url="https://hooks.example/x", webhook_events="started,completed")
    with db_sessions.begin() as session:
        record_event(session, job_id, "started", {"stage": "prior"})
        record_event(session, job_id, "succeeded", {"image_indices": [0]})
    [started] = _claim(db_sessions)  # the completed one waits while started is being sent
    assert started.event == "started" and _claim(db_sessions) == []
    _record(db_sessions, started, 200)
    [completed] = _claim(db_sessions)
    assert completed.event == "completed"


def test_attempt_numbers_keep_growing_across_a_redelivery(
    outbox: tuple[sessionmaker[Session], Callable[..., str]],
) -> None:
    db_sessions, make_job = outbox
    job_id = _job_with_delivery(make_job, db_sessions)
    for _ in range(MAX_ATTEMPTS):
        [delivery] = _claim(db_sessions)
        _record(db_sessions, delivery, 503)
        _make_due(db_sessions)
    delivery, numbers = _log(db_sessions, job_id)
    assert delivery.status == "failed" and numbers == list(range(1, MAX_ATTEMPTS + 1))

    with db_sessions.begin() as session:
        assert redeliver(session, job_id, now=utcnow()) == [delivery.id]
    [again] = _claim(db_sessions)
    _record(db_sessions, again, 503)  # its retries ran out: one more try, no new schedule
    delivery, numbers = _log(db_sessions, job_id)
    assert delivery.status == "failed" and delivery.attempts == MAX_ATTEMPTS + 1
    assert numbers == list(range(1, MAX_ATTEMPTS + 2))

    with db_sessions.begin() as session:
        redeliver(session, job_id, now=utcnow())
    [last] = _claim(db_sessions)
    _record(db_sessions, last, 200)
    delivery, numbers = _log(db_sessions, job_id)
    assert delivery.status == "delivered" and numbers == list(range(1, MAX_ATTEMPTS + 3))


def test_redelivery_is_a_conflict_while_the_delivery_is_being_sent(
    outbox: tuple[sessionmaker[Session], Callable[..., str]],
) -> None:
    db_sessions, make_job = outbox
    job_id = _job_with_delivery(make_job, db_sessions)
    [claimed] = _claim(db_sessions)
    with db_sessions.begin() as session, pytest.raises(Conflict, match="being sent right now"):
        redeliver(session, job_id, now=utcnow())
    assert _claim(db_sessions) == []  # still the first dispatcher's: nobody sends it beside
    assert _record(db_sessions, claimed, 200) is True
    assert _log(db_sessions, job_id)[0].status == "delivered"

    with db_sessions.begin() as session:  # once the attempt is logged it may be sent again
        assert redeliver(session, job_id, now=utcnow()) == [claimed.id]
        [(delivery, _)] = deliveries_for_job(session, job_id)
        assert delivery.status == "pending"  # the log read after it shows the change


def test_a_sending_delivery_whose_lease_lapsed_may_be_redelivered(
    outbox: tuple[sessionmaker[Session], Callable[..., str]],
) -> None:
    db_sessions, make_job = outbox
    job_id = _job_with_delivery(make_job, db_sessions)
    [claimed] = _claim(db_sessions)
    later = utcnow() + timedelta(seconds=LEASE_S + 1)  # its dispatcher died
    with db_sessions.begin() as session:
        assert redeliver(session, job_id, now=later) == [claimed.id]
    assert _record(db_sessions, claimed, 200) is False  # the dead claim no longer decides
    delivery, numbers = _log(db_sessions, job_id)
    assert delivery.status == "pending" and numbers == [1]


def test_a_lapsed_claim_logs_its_attempt_but_leaves_the_delivery_to_the_new_holder(
    outbox: tuple[sessionmaker[Session], Callable[..., str]],
) -> None:
    db_sessions, make_job = outbox
    job_id = _job_with_delivery(make_job, db_sessions)
    stale, fresh = _claimed_twice(db_sessions)
    assert _record(db_sessions, stale, 200) is False
    assert _log(db_sessions, job_id)[0].status == "sending"
    assert _record(db_sessions, fresh, 500) is True
    delivery, numbers = _log(db_sessions, job_id)
    assert delivery.status == "pending" and delivery.attempts == 2
    assert numbers == [1, 2]  # unique, though both claims began from zero attempts


def test_a_final_outcome_is_not_retried(
    outbox: tuple[sessionmaker[Session], Callable[..., str]],
) -> None:
    db_sessions, make_job = outbox
    job_id = _job_with_delivery(make_job, db_sessions)
    [claimed] = _claim(db_sessions)
    _record(db_sessions, claimed, None, final=True)
    _make_due(db_sessions)
    assert _claim(db_sessions) == []
    assert _log(db_sessions, job_id)[0].status == "failed"


def test_the_log_lists_attempts_in_the_order_they_were_made(
    outbox: tuple[sessionmaker[Session], Callable[..., str]],
) -> None:
    """Rows from before numbers kept growing repeat a number; the log still reads in time."""
    db_sessions, make_job = outbox
    job_id = _job_with_delivery(make_job, db_sessions)
    with db_sessions.begin() as session:
        [(delivery, _)] = deliveries_for_job(session, job_id)
        start = utcnow()
        for number, after_s in ((1, 0), (2, 5), (1, 29)):
            session.add(WebhookAttempt(delivery_id=delivery.id, number=number, duration_ms=1,
                                       started_at=start + timedelta(seconds=after_s)))  # fmt: skip
    with db_sessions() as session:
        [(_, attempts)] = deliveries_for_job(session, job_id)
    assert [(a.number, (a.started_at - start).seconds) for a in attempts] == [
        (1, 0), (2, 5), (1, 29)]  # fmt: skip


def test_two_attempts_logged_at_once_get_different_numbers(
    outbox: tuple[sessionmaker[Session], Callable[..., str]],
) -> None:
    db_sessions, make_job = outbox
    job_id = _job_with_delivery(make_job, db_sessions)
    stale, fresh = _claimed_twice(db_sessions)
    with db_sessions() as first:
        record_attempt(first, stale, AttemptOutcome(200, None, utcnow(), 5))  # not committed
        second = threading.Thread(target=_record, args=(db_sessions, fresh, 500))
        second.start()
        second.join(0.3)
        assert second.is_alive()  # waiting for the first to commit: it holds the row
        first.commit()
    second.join(10)
    delivery, numbers = _log(db_sessions, job_id)
    assert numbers == [1, 2] and delivery.status == "pending"
