"""Webhook deliveries: written with the event, signed, retried on schedule, logged, redelivered."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from shared.db.base import utcnow
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.job_events import events_after, record_event
from shared.db.models import Job, WebhookDelivery
from shared.db.webhooks import deliveries_for_job, redeliver
from shared.settings import Settings
from shared.webhooks.dispatcher import Dispatcher
from shared.webhooks.signing import webhook_secret


class Receiver:
    """A local HTTP receiver answering the given status codes in turn (then 200)."""

    def __init__(self, codes: list[int]) -> None:
        self.codes, self.seen = list(codes), []  # type: list[int], list[tuple[dict[str, str], str]]
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                receiver.seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.codes.pop(0) if receiver.codes else 200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Callable[[list[int]], Receiver]]:
    made: list[Receiver] = []

    def _make(codes: list[int]) -> Receiver:
        made.append(Receiver(codes))
        return made[-1]

    yield _make
    for r in made:
        r.server.shutdown()


def _due_now(sessions: sessionmaker[Session], job_id: str) -> float:
    """Pull the job's pending delivery forward to now; how far ahead it was scheduled (s)."""
    with sessions.begin() as session:
        [(delivery, _)] = deliveries_for_job(session, job_id)
        ahead = (delivery.next_attempt_at - utcnow()).total_seconds()
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id)
                        .values(next_attempt_at=utcnow()))  # fmt: skip
    return ahead


def _three_tries(settings: Settings, sessions: sessionmaker[Session], job_id: str,
                 hook: Receiver) -> None:  # fmt: skip
    with sessions.begin() as session:
        record_event(session, job_id, "succeeded", {"image_indices": [0]})
    dispatcher = Dispatcher(settings, sessions,
                            image_url=lambda job, i: f"https://img.example/{job}/{i}")  # fmt: skip

    assert dispatcher.run_once() == 1  # the first try goes at once
    assert dispatcher.run_once() == 0  # the second is scheduled, not due yet
    assert 3 < _due_now(sessions, job_id) <= 5
    assert dispatcher.run_once() == 1
    assert 290 < _due_now(sessions, job_id) <= 300
    assert dispatcher.run_once() == 1
    assert dispatcher.run_once() == 0  # delivered: nothing more to send

    assert len(hook.seen) == 3
    ids = {headers["webhook-id"] for headers, _ in hook.seen}
    assert len(ids) == 1  # the same webhook-id on every retry
    secret = webhook_secret(settings.api_key_secret.get_secret_value(), "local")
    headers, body = hook.seen[-1]
    verified = Webhook(secret).verify(body, headers)
    assert verified["type"] == "job.succeeded" and verified["job_id"] == job_id
    assert verified["data"]["images"] == [f"https://img.example/{job_id}/0"]

    with sessions() as session:
        [(delivery, attempts)] = deliveries_for_job(session, job_id)
    assert delivery.status == "delivered" and delivery.attempts == 3
    assert [a.status_code for a in attempts] == [500, 500, 200]


def test_a_receiver_that_fails_twice_gets_it_on_the_third_try(
    sqlite_settings: Settings, db_sessions: sessionmaker[Session],
    make_job: Callable[..., str], receiver: Callable[[list[int]], Receiver],
) -> None:  # fmt: skip
    hook = receiver([500, 500])
    _three_tries(sqlite_settings, db_sessions, make_job(webhook_url=hook.url), hook)


def test_the_same_on_postgresql(
    tmp_path: Path, postgres_url: str, receiver: Callable[[list[int]], Receiver]
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=postgres_url)
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    hook = receiver([500, 500])
    with sessions.begin() as session:
        job = Job(kind="generate", prompt="a red circle", n=1, size="64x64", seed=7,
                  status="succeeded", attempt=3, webhook_url=hook.url)  # fmt: skip
        session.add(job)
        session.flush()
        job_id = job.id
    try:
        _three_tries(settings, sessions, job_id, hook)
    finally:
        engine.dispose()


def test_events_are_ordered_and_progress_deliveries_coalesce(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    job_id = make_job(webhook_url="https://hooks.example/x")
    with db_sessions.begin() as session:
        job = session.get_one(Job, job_id)
        job.webhook_events = "started,progress,completed"
    with db_sessions.begin() as session:
        record_event(session, job_id, "started", {"stage": "prior", "steps": 4})
        for step in (1, 2, 3):
            record_event(session, job_id, "progress", {"stage": "prior", "step": step})
        record_event(session, job_id, "stage_done", {"stage": "prior"})
    with db_sessions() as session:
        events = events_after(session, job_id)
        assert [e.event for e in events] == ["started", "progress", "progress", "progress",
                                             "stage_done"]  # fmt: skip
        assert [e.event for e in events_after(session, job_id, events[2].id)] == [
            "progress", "stage_done"]  # fmt: skip
        deliveries = [d for d, _ in deliveries_for_job(session, job_id)]
    # stage_done is not a webhook event; three progress events wait as one delivery.
    assert [d.event for d in deliveries] == ["started", "progress"]
    assert deliveries[1].payload["data"]["step"] == 3


def test_a_failed_delivery_can_be_redelivered_with_its_id(
    sqlite_settings: Settings, db_sessions: sessionmaker[Session],
    make_job: Callable[..., str], receiver: Callable[[list[int]], Receiver],
) -> None:  # fmt: skip
    hook = receiver([503] * 8)
    job_id = make_job(webhook_url=hook.url)
    with db_sessions.begin() as session:
        record_event(session, job_id, "failed", {"code": "x"})
    dispatcher = Dispatcher(sqlite_settings, db_sessions)
    for _ in range(8):
        dispatcher.run_once()
        with db_sessions.begin() as session:
            session.execute(update(WebhookDelivery).values(
                next_attempt_at=utcnow() - timedelta(seconds=1)))  # fmt: skip
    with db_sessions() as session:
        [(delivery, attempts)] = deliveries_for_job(session, job_id)
    assert delivery.status == "failed" and len(attempts) == 8  # the schedule ran out
    with db_sessions.begin() as session:
        assert redeliver(session, job_id, now=utcnow()) == [delivery.id]
    assert dispatcher.run_once() == 1
    assert json.loads(hook.seen[-1][1])["type"] == "job.failed"
    assert hook.seen[-1][0]["webhook-id"] == delivery.id
