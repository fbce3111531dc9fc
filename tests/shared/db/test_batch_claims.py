"""waiting_jobs: which jobs a batching worker may add, and SKIP LOCKED between two workers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.batch_claims import waiting_jobs
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.db.models import Job, StageAttempt
from shared.settings import Settings


@pytest.fixture(scope="module")
def pg_sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    """A migrated PostgreSQL database of this module alone: waiting_jobs sees every job."""
    psycopg = pytest.importorskip("psycopg")
    name = f"unclip_batch_claims_{uuid.uuid4().hex[:10]}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 is not reachable ({exc})")
    settings = Settings(data_dir=tmp_path_factory.mktemp("pg"),
                        database_url=f"postgresql+psycopg://postgres@127.0.0.1/{name}")  # fmt: skip
    upgrade(settings)
    engine = make_engine(settings)
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _empty(pg_sessions: sessionmaker[Session]) -> None:
    with pg_sessions.begin() as session:
        session.execute(delete(StageAttempt))
        session.execute(delete(Job))


def _job(session: Session, **fields: object) -> str:
    values: dict[str, object] = dict(kind="generate", prompt="p", n=1, size="64x64", seed=1,
                                     status="queued", attempt=0)  # fmt: skip
    values.update(fields)
    job = Job(**values)
    session.add(job)
    session.flush()
    return job.id


def test_only_unheld_jobs_new_to_the_stage_wait(pg_sessions: sessionmaker[Session]) -> None:
    with pg_sessions.begin() as session:
        fresh = _job(session)
        held = _job(session, status="decoder", worker_id="w:1", heartbeat_at=utcnow())
        at_decoder = _job(session, status="decoder")
        retrying = _job(session, status="decoder", attempt=2)
        session.add(StageAttempt(job_id=retrying, stage="decoder", attempt=2, worker_id="w:1",
                                 status="failed", started_at=utcnow()))  # fmt: skip
        _job(session, status="cancelled")
    with pg_sessions.begin() as session:
        assert [j.id for j in waiting_jobs(session, stage="prior", exclude=[], limit=9)] == [fresh]
        found = waiting_jobs(session, stage="decoder", exclude=[], limit=9)
        assert [j.id for j in found] == [at_decoder]
        assert held not in [j.id for j in found]
        assert waiting_jobs(session, stage="decoder", exclude=[at_decoder], limit=9) == []


def test_two_workers_looking_at_once_take_different_jobs(
    pg_sessions: sessionmaker[Session],
) -> None:
    with pg_sessions.begin() as session:
        ids = [_job(session) for _ in range(4)]
    with pg_sessions.begin() as first, pg_sessions.begin() as second:
        mine = [j.id for j in waiting_jobs(first, stage="prior", exclude=[], limit=2)]
        theirs = [j.id for j in waiting_jobs(second, stage="prior", exclude=[], limit=4)]
    assert mine == ids[:2]
    assert theirs == ids[2:]  # the rows the first holds are skipped, not waited for
