"""The sweeper: stale claims re-queued or failed, stuck jobs re-published, the outbox drained,
and none of it done twice when two sweepers run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.claims import claim_stage
from shared.db.models import Job, OutboxMessage, StageAttempt
from shared.db.outbox import PendingMessage, record_message
from shared.settings import Settings
from shared.sweeper import PUBLISH_GRACE_S, Sweeper

Sessions = sessionmaker[Session]
HOUR = timedelta(hours=1)


class Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int]] = []
        self.down = False

    def __call__(self, message: PendingMessage) -> str:
        if self.down:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.sent.append((message.job_id, message.stage.value, message.attempt))
        return "sent"


@pytest.fixture
def publisher() -> Publisher:
    return Publisher()


@pytest.fixture
def sweeper(sqlite_settings: Settings, db_sessions: Sessions, publisher: Publisher) -> Sweeper:
    settings = sqlite_settings.model_copy(update={"max_attempts": 2, "heartbeat_stale_s": 60.0})
    return Sweeper(settings, sessions=db_sessions, publish=publisher)


def _claim(sessions: Sessions, job_id: str, stage: str, *, at: datetime) -> None:
    with sessions.begin() as session:
        claim = claim_stage(session, job_id=job_id, stage=stage, worker_id="gone:1",
                            stale_after_s=60, max_attempts=9, now=at)  # fmt: skip
    assert claim is not None


def _job(sessions: Sessions, job_id: str) -> Job:
    with sessions() as session:
        return session.get_one(Job, job_id)


def _attempts(sessions: Sessions, job_id: str) -> list[str]:
    with sessions() as session:
        query = select(StageAttempt.status).where(StageAttempt.job_id == job_id)
        return list(session.scalars(query.order_by(StageAttempt.attempt)))


def test_stale_claim_is_released_and_requeued(
    sweeper: Sweeper, publisher: Publisher, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    _claim(db_sessions, job_id, "prior", at=utcnow() - HOUR)
    report = sweeper.sweep_once()
    assert report.stale_requeued == 1
    job = _job(db_sessions, job_id)
    assert (job.status, job.worker_id, job.heartbeat_at) == ("prior", None, None)
    assert _attempts(db_sessions, job_id) == ["lost"]
    assert publisher.sent == [(job_id, "prior", 1)]
    assert not sweeper.sweep_once()  # nothing left to do


def test_live_claim_is_left_alone(
    sweeper: Sweeper, publisher: Publisher, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    _claim(db_sessions, job_id, "prior", at=utcnow())
    assert not sweeper.sweep_once()
    assert _job(db_sessions, job_id).worker_id == "gone:1" and not publisher.sent


def test_stale_claim_past_max_attempts_fails_the_job_with_the_reason(
    sweeper: Sweeper, publisher: Publisher, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    for _ in range(2):  # max_attempts=2: the second lost attempt is the last
        _claim(db_sessions, job_id, "prior", at=utcnow() - HOUR)
        sweeper.sweep_once()
    job = _job(db_sessions, job_id)
    assert (job.status, job.error_code) == ("failed", "too_many_attempts")
    assert "tried 2 times" in (job.error_message or "")
    assert "stopped heart-beating" in (job.error_message or "")
    assert _attempts(db_sessions, job_id) == ["lost", "lost"]
    assert publisher.sent == [(job_id, "prior", 1)]


@pytest.mark.parametrize("status", ["queued", "decoder"])
def test_job_without_claim_or_message_is_republished_once(
    sweeper: Sweeper,
    publisher: Publisher,
    db_sessions: Sessions,
    make_job: Callable[..., str],
    status: str,
) -> None:
    job_id = make_job(status=status, attempt=1)
    assert not sweeper.sweep_once()  # not stuck yet
    later = utcnow() + timedelta(seconds=sweeper.settings.sweeper.stuck_after_s + 1)
    assert sweeper.sweep_once(now=later).stuck_requeued == 1
    stage = "prior" if status == "queued" else status
    assert publisher.sent == [(job_id, stage, 1)]
    # A second sweeper with the same view of the world finds nothing more to do.
    assert not sweeper.sweep_once(now=later)
    assert len(publisher.sent) == 1


def test_job_waiting_for_its_retry_is_not_stuck(
    sweeper: Sweeper, publisher: Publisher, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job(status="decoder", attempt=2)
    stuck_s = sweeper.settings.sweeper.stuck_after_s
    with db_sessions.begin() as session:
        message = record_message(session, job_id=job_id, stage="decoder", attempt=2,
                                 reason="retry", delay_s=2 * stuck_s)  # fmt: skip
        session.get_one(OutboxMessage, message.id).published_at = utcnow()
    later = utcnow() + timedelta(seconds=stuck_s + 1)
    assert not sweeper.sweep_once(now=later)
    much_later = utcnow() + timedelta(seconds=3 * stuck_s + 2)
    assert sweeper.sweep_once(now=much_later).stuck_requeued == 1  # the retry never came


def test_terminal_and_held_jobs_are_never_swept(
    sweeper: Sweeper, publisher: Publisher, make_job: Callable[..., str]
) -> None:
    for status in ("succeeded", "failed", "cancelled", "rejected", "held"):
        make_job(status=status)
    assert not sweeper.sweep_once(now=utcnow() + 10 * HOUR) and not publisher.sent


def test_unpublished_outbox_message_is_published_after_the_grace(
    sweeper: Sweeper, publisher: Publisher, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job(status="decoder", attempt=1)
    with db_sessions.begin() as session:
        record_message(session, job_id=job_id, stage="decoder", attempt=1, reason="next_stage")
    assert not sweeper.sweep_once()  # its own publisher still has the grace period
    later = utcnow() + timedelta(seconds=PUBLISH_GRACE_S + 1)
    assert sweeper.sweep_once(now=later).outbox_published == 1
    assert not sweeper.sweep_once(now=later)
    assert publisher.sent == [(job_id, "decoder", 1)]


def test_outbox_message_the_broker_refuses_stays_for_the_next_pass(
    sweeper: Sweeper, publisher: Publisher, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job(status="upsampler", attempt=2)
    with db_sessions.begin() as session:
        record_message(session, job_id=job_id, stage="upsampler", attempt=2, reason="next_stage")
    publisher.down = True
    later = utcnow() + timedelta(seconds=PUBLISH_GRACE_S + 1)
    assert sweeper.sweep_once(now=later).publish_errors == 1
    with db_sessions() as session:
        row: Any = session.scalars(select(OutboxMessage)).one()
    assert row.published_at is None and "Connection refused" in (row.last_error or "")
    publisher.down = False
    retry_at = later + timedelta(seconds=sweeper.settings.sweeper.interval_s + 1)
    assert sweeper.sweep_once(now=retry_at).outbox_published == 1
    assert publisher.sent == [(job_id, "upsampler", 2)]


def test_unclip_sweeper_once_runs_a_pass(
    sqlite_settings: Settings, make_job: Callable[..., str]
) -> None:
    """The command end to end on the embedded default: a stuck job's message is written to the
    filesystem broker's queue folder."""
    import os
    import subprocess
    import sys

    make_job(status="queued", updated_at=utcnow() - 10 * HOUR)
    env = dict(os.environ, UNCLIP_DATA_DIR=str(sqlite_settings.data_dir),
               UNCLIP_DATABASE_URL=sqlite_settings.database_url)  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "shared.cli", "sweeper", "--once"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "stuck_requeued=1" in done.stdout
    assert len(list((sqlite_settings.broker_dir / "queue").iterdir())) == 1


def test_a_pass_runs_retention_when_it_has_storage(
    tmp_path: Path, sqlite_settings: Settings, db_sessions: Sessions, publisher: Publisher,
    make_job: Callable[..., str],
) -> None:  # fmt: skip
    from shared.storage.local import LocalStorage

    storage = LocalStorage(tmp_path / "store")
    settings = Settings(**{**sqlite_settings.model_dump(), "retention": {"job_s": 60.0}})
    old = make_job(status="succeeded", finished_at=utcnow() - timedelta(hours=1))
    storage.put_bytes(f"jobs/{old}/attempt-3/images/0.png", b"x", "image/png")
    report = Sweeper(settings, sessions=db_sessions, publish=publisher,
                     storage=storage).sweep_once()  # fmt: skip
    assert report.expired == 1 and _job(db_sessions, old).status == "expired"
    assert not storage.exists(f"jobs/{old}/attempt-3/images/0.png")
