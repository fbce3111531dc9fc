"""The embedded broker (kombu's filesystem transport): no server, fast polling, cheap leftovers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from kombu import Connection
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import StageAttempt
from shared.db.states import Stage
from shared.queue.celery_app import (
    FILESYSTEM_POLLING_S,
    FILESYSTEM_PREFETCH,
    celery_config,
    make_celery,
)
from shared.queue.dispatch import enqueue_stage
from shared.settings import Settings
from shared.storage.local import LocalStorage
from worker.tasks import batching
from worker.tasks.app import register_tasks
from worker.tasks.base import RenderTask, Resources


def test_the_filesystem_transport_polls_at_the_configured_interval(tmp_path: Path) -> None:
    """kombu honours the option (its SQLAlchemy transport, for one, would refuse it)."""
    config = celery_config(Settings(data_dir=tmp_path))
    assert config["broker_url"] == "filesystem://"
    options = config["broker_transport_options"]
    with Connection(config["broker_url"], transport_options=options) as connection:
        assert connection.transport.polling_interval == FILESYSTEM_POLLING_S
    assert FILESYSTEM_POLLING_S <= 0.1


def test_the_embedded_worker_holds_its_next_message_and_a_redis_one_does_not(
    tmp_path: Path,
) -> None:
    """On the filesystem broker the worker prefetches one message beyond the running one (no
    visibility clock there, one worker); late acks hold both. On Redis, prefetch stays 1."""
    embedded = celery_config(Settings(data_dir=tmp_path))
    assert embedded["worker_prefetch_multiplier"] == FILESYSTEM_PREFETCH == 2
    assert embedded["task_acks_late"] and embedded["task_reject_on_worker_lost"]
    redis = celery_config(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0"))
    assert redis["worker_prefetch_multiplier"] == 1


def test_a_stage_message_goes_through_folders_without_a_server(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    app = make_celery(settings)
    enqueue_stage(app, "job-1", Stage.decoder, 2)
    with app.connection_for_read() as connection:
        queue = connection.SimpleQueue("decoder")
        message = queue.get(timeout=5)
        message.ack()
        queue.close()
    assert message.headers["task"] == "render.decoder"
    assert message.headers["id"] == "job-1.decoder.2"
    assert list((tmp_path / "broker" / "queue").iterdir()) == []  # taken off the folder


def test_a_cancelled_jobs_leftover_message_costs_only_the_claim_check(
    sqlite_settings: Settings,
    db_sessions: sessionmaker[Session],
    tmp_path: Path,
    tiny_family_dir: Path,
    make_job: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = sqlite_settings.model_copy(update={"family": tiny_family_dir, "device": "cpu"})
    monkeypatch.setattr(
        RenderTask, "_resources", Resources(settings, db_sessions, LocalStorage(tmp_path / "s"))
    )

    def must_not_render(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a cancelled job's message rendered")

    monkeypatch.setitem(batching.STAGE_CALLS, Stage.prior, must_not_render)
    app = register_tasks(Celery("test-leftovers", set_as_current=False))
    job_id = make_job(status="cancelled")
    outcome = app.tasks["render.prior"].apply(kwargs={"job_id": job_id}).get()
    assert outcome == "duplicate"
    with db_sessions() as session:
        assert session.query(StageAttempt).filter_by(job_id=job_id).count() == 0
