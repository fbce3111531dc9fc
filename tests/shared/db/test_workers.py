"""The worker registry and the per-stage queue statistics, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.db.models import Job, StageAttempt, Worker
from shared.db.queue_stats import stage_loads, stage_throughput
from shared.db.workers import (
    WorkerActivity,
    WorkerRecord,
    WorkerState,
    count_workers,
    list_workers,
    prune_workers,
    save_worker,
    stop_worker,
)
from shared.settings import Settings

STALE_S = 30.0
T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def record(node: str, pid: int, queues: tuple[str, ...] = ("prior",)) -> WorkerRecord:
    return WorkerRecord(
        id=f"{node}:{pid}", node=node, host="host-a", pid=pid, queues=queues, device="cpu",
        dtype="float32", family="models/shapes", started_at=T0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def own_postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated PostgreSQL database of this module alone (the statistics count every row)."""
    psycopg = pytest.importorskip("psycopg")
    name = f"unclip_fleet_{uuid.uuid4().hex[:12]}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL on 127.0.0.1:5432 is not reachable ({exc}); `make test` starts it"
        if os.environ.get("UNCLIP_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    url = f"postgresql+psycopg://postgres@127.0.0.1/{name}"
    try:
        upgrade(Settings(data_dir=tmp_path_factory.mktemp("pg"), database_url=url))
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def sessions(
    request: pytest.FixtureRequest, tmp_path: Path, db_sessions: sessionmaker[Session]
) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        yield db_sessions
        return
    url = request.getfixturevalue("own_postgres_url")
    engine = make_engine(Settings(data_dir=tmp_path, database_url=url))
    factory = make_sessionmaker(engine)
    with factory.begin() as session:  # a clean slate for each test
        session.execute(delete(Worker))
        session.execute(delete(StageAttempt))
        session.execute(delete(Job))
    yield factory
    engine.dispose()


@pytest.fixture
def add_job(sessions: sessionmaker[Session]) -> Callable[..., str]:
    def _add(**fields: Any) -> str:
        values: dict[str, Any] = dict(
            kind="generate", prompt="a red circle", n=1, size="64x64", seed=7, sampler="ddim",
            steps_prior=2, steps_decoder=2, steps_upsampler=2, prior_guidance=1.0,
            decoder_guidance=1.0, status="queued", attempt=0,
        )  # fmt: skip
        values.update(fields)
        with sessions.begin() as session:
            job = Job(**values)
            session.add(job)
            session.flush()
            return job.id

    return _add


def _save(
    sessions: sessionmaker[Session], rec: WorkerRecord, now: datetime, **activity: Any
) -> None:
    with sessions.begin() as session:
        save_worker(session=session, record=rec, activity=WorkerActivity(**activity), now=now)


def _states(sessions: sessionmaker[Session], now: datetime) -> dict[str, WorkerState]:
    with sessions() as session:
        views = list_workers(session=session, stale_after_s=STALE_S, now=now)
    return {view.row.id: view.state for view in views}


def test_heartbeat_rewrites_one_row_with_the_activity(sessions: sessionmaker[Session]) -> None:
    rec = record("decoder@host-a", 11, ("decoder", "upsampler"))
    _save(sessions, rec, T0)
    _save(sessions, rec, T0 + timedelta(seconds=5), current_job_id="job-1",
          current_stage="decoder", current_since=T0, jobs_done=3)  # fmt: skip
    with sessions() as session:
        [view] = list_workers(session=session, stale_after_s=STALE_S, now=T0 + timedelta(seconds=6))
    row = view.row
    assert (row.id, row.queues, row.heartbeat_at) == (rec.id, ["decoder", "upsampler"],
                                                      T0 + timedelta(seconds=5))  # fmt: skip
    assert (row.current_job_id, row.current_stage, row.jobs_done) == ("job-1", "decoder", 3)
    assert view.state is WorkerState.busy


def test_silent_worker_is_lost_not_dropped(sessions: sessionmaker[Session]) -> None:
    alive, silent = record("a@h", 1), record("b@h", 2)
    _save(sessions, silent, T0)
    _save(sessions, alive, T0 + timedelta(seconds=40))
    now = T0 + timedelta(seconds=STALE_S + 5)
    assert _states(sessions, now) == {alive.id: WorkerState.idle, silent.id: WorkerState.lost}
    # It comes back: its next heartbeat makes it live again.
    _save(sessions, silent, now)
    assert _states(sessions, now)[silent.id] is WorkerState.idle


def test_stopped_worker_stays_stopped_and_is_counted(sessions: sessionmaker[Session]) -> None:
    busy, idle, gone = record("a@h", 1), record("b@h", 2), record("c@h", 3)
    _save(sessions, busy, T0, current_job_id="j", current_stage="prior", current_since=T0)
    _save(sessions, idle, T0)
    _save(sessions, gone, T0)
    with sessions.begin() as session:
        assert stop_worker(session=session, worker_id=gone.id, now=T0)
        assert not stop_worker(session=session, worker_id="never@h:9", now=T0)
    later = T0 + timedelta(seconds=STALE_S * 10)
    assert _states(sessions, later)[gone.id] is WorkerState.stopped
    with sessions() as session:
        now_counts = count_workers(session=session, stale_after_s=STALE_S, now=T0)
        later_counts = count_workers(session=session, stale_after_s=STALE_S, now=later)
    assert now_counts == {"idle": 1, "busy": 1, "lost": 0, "stopped": 1}
    assert later_counts == {"idle": 0, "busy": 0, "lost": 2, "stopped": 1}


def test_prune_deletes_only_rows_silent_past_retention(sessions: sessionmaker[Session]) -> None:
    old, recent = record("old@h", 1), record("new@h", 2)
    _save(sessions, old, T0)
    _save(sessions, recent, T0 + timedelta(hours=2))
    with sessions.begin() as session:
        pruned = prune_workers(session=session, older_than_s=3600, now=T0 + timedelta(hours=2))
    assert pruned == 1
    assert set(_states(sessions, T0 + timedelta(hours=2))) == {recent.id}
    _save(sessions, old, T0 + timedelta(hours=2))  # a pruned worker that beats is back
    assert set(_states(sessions, T0 + timedelta(hours=2))) == {old.id, recent.id}


def test_queue_depth_counts_jobs_without_a_live_claim(
    sessions: sessionmaker[Session], add_job: Callable[..., str]
) -> None:
    now = utcnow()
    for _ in range(3):
        add_job(status="queued")
    add_job(status="prior", worker_id=None)  # released after a failed attempt
    add_job(status="prior", worker_id="w:1", heartbeat_at=now)  # running
    add_job(status="decoder", worker_id="w:2", heartbeat_at=now - timedelta(seconds=STALE_S * 2))
    add_job(status="decoder", worker_id="w:3", heartbeat_at=now)
    add_job(status="upsampler", worker_id=None)
    add_job(status="succeeded")
    add_job(status="held")
    with sessions() as session:
        loads = stage_loads(session=session, stale_after_s=STALE_S, now=now)
    assert [(x.stage.value, x.waiting, x.running) for x in loads] == [
        ("prior", 4, 1), ("decoder", 1, 1), ("upsampler", 1, 0),
    ]  # fmt: skip


def test_throughput_counts_attempts_finished_in_the_window(
    sessions: sessionmaker[Session], add_job: Callable[..., str]
) -> None:
    now = utcnow()
    job_id = add_job(status="succeeded")
    attempts = [
        ("prior", "succeeded", now - timedelta(seconds=30)),
        ("prior", "succeeded", now - timedelta(seconds=90)),
        ("prior", "failed", now - timedelta(seconds=100)),
        ("prior", "succeeded", now - timedelta(seconds=400)),  # before the window
        ("decoder", "lost", now - timedelta(seconds=10)),
        ("upsampler", "running", None),
    ]
    with sessions.begin() as session:
        for number, (stage, status, finished) in enumerate(attempts, start=1):
            session.add(StageAttempt(job_id=job_id, stage=stage, attempt=number, status=status,
                                     started_at=now - timedelta(seconds=500),
                                     finished_at=finished))  # fmt: skip
    with sessions() as session:
        stats = stage_throughput(session=session, window_s=300, now=now)
    by_stage = {s.stage.value: s for s in stats}
    assert by_stage["prior"].finished == {"succeeded": 2, "failed": 1, "lost": 0, "cancelled": 0}
    assert by_stage["prior"].succeeded_per_minute == pytest.approx(2 * 60 / 300)
    assert by_stage["decoder"].finished["lost"] == 1
    assert sum(by_stage["upsampler"].finished.values()) == 0
