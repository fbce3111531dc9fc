"""Retention: old finished jobs lose their files and become expired; safe to run again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.job_events import events_after
from shared.db.models import Job
from shared.retention import run_retention
from shared.settings import Settings
from shared.storage.local import LocalStorage


def _finished(make_job: Callable[..., str], storage: LocalStorage, *, hours_ago: float,
              status: str = "succeeded") -> str:  # fmt: skip
    done = utcnow() - timedelta(hours=hours_ago)
    job_id = make_job(status=status, finished_at=done,
                      input_image_key=None, mask_key=None)  # fmt: skip
    for key in ("inputs/image.png", "attempt-3/images/0.png", "attempt-1/prior/emb.safetensors"):
        storage.put_bytes(f"jobs/{job_id}/{key}", b"x", "application/octet-stream")
    return job_id


def test_old_jobs_expire_and_lose_their_files(
    tmp_path: Path, sqlite_settings: Settings, db_sessions: sessionmaker[Session],
    make_job: Callable[..., str],
) -> None:  # fmt: skip
    storage = LocalStorage(tmp_path / "store")
    settings = Settings(**{**sqlite_settings.model_dump(), "retention": {"job_s": 3600.0}})
    old = _finished(make_job, storage, hours_ago=2)
    recent = _finished(make_job, storage, hours_ago=0.5)
    running = make_job(status="decoder")
    with db_sessions.begin() as session:
        assert run_retention(session, storage, settings) == 1
    with db_sessions() as session:
        expired = session.get_one(Job, old)
        assert (expired.status, expired.status_reason) == ("expired", "expired_by_retention")
        assert session.get_one(Job, recent).status == "succeeded"
        assert session.get_one(Job, running).status == "decoder"
        assert [e.event for e in events_after(session, old)] == ["expired"]
    assert not (storage.root / "jobs" / old).exists()
    assert storage.exists(f"jobs/{recent}/attempt-3/images/0.png")
    with db_sessions.begin() as session:  # a second pass finds nothing more to do
        assert run_retention(session, storage, settings) == 0


def test_inputs_can_go_before_the_outputs(
    tmp_path: Path, sqlite_settings: Settings, db_sessions: sessionmaker[Session],
    make_job: Callable[..., str],
) -> None:  # fmt: skip
    storage = LocalStorage(tmp_path / "store")
    settings = Settings(**{**sqlite_settings.model_dump(), "retention": {"inputs_s": 60.0}})
    job_id = _finished(make_job, storage, hours_ago=1)
    generated = _finished(make_job, storage, hours_ago=1)  # a generate job uploads nothing
    with db_sessions.begin() as session:
        job = session.get_one(Job, job_id)
        job.kind, job.input_image_key = "variation", f"jobs/{job_id}/inputs/image.png"
    with db_sessions.begin() as session:
        assert run_retention(session, storage, settings) == 1
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
        assert job.status == "succeeded" and job.input_image_key is None
        assert job.inputs_removed_at is not None
    assert not storage.exists(f"jobs/{job_id}/inputs/image.png")
    assert storage.exists(f"jobs/{job_id}/attempt-3/images/0.png")
    assert storage.exists(f"jobs/{generated}/inputs/image.png")  # not an input kind: untouched
    with db_sessions.begin() as session:  # a second pass finds nothing more to do
        assert run_retention(session, storage, settings) == 0


def test_retention_on_postgresql_expires_and_removes_files(
    tmp_path: Path, postgres_url: str
) -> None:
    from shared.db.engine import make_engine, make_sessionmaker

    settings = Settings(data_dir=tmp_path, database_url=postgres_url,
                        retention={"job_s": 5 * 86400.0})  # fmt: skip
    storage = LocalStorage(tmp_path / "store")
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    try:
        with sessions.begin() as session:
            job = Job(kind="generate", prompt="a red circle", n=1, size="64x64", seed=7,
                      status="succeeded", attempt=3,
                      finished_at=utcnow() - timedelta(days=10))  # fmt: skip
            session.add(job)
            session.flush()
            job_id = job.id
        storage.put_bytes(f"jobs/{job_id}/attempt-3/images/0.png", b"x", "image/png")
        with sessions.begin() as session:
            assert run_retention(session, storage, settings) >= 1
        with sessions() as session:
            assert session.get_one(Job, job_id).status == "expired"
        assert not storage.exists(f"jobs/{job_id}/attempt-3/images/0.png")
    finally:
        engine.dispose()
