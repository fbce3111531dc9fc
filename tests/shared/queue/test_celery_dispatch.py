"""Celery config carries the reliability settings; stage messages go by name to their queue."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from shared.db.states import Stage
from shared.errors import QueueUnavailable
from shared.queue.celery_app import make_celery
from shared.queue.dispatch import CeleryStageQueue, enqueue_stage
from shared.settings import Settings


def test_reliability_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0")
    conf = make_celery(settings).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.task_ignore_result
    assert conf.task_time_limit == settings.task_time_limit_s
    visibility = conf.broker_transport_options["visibility_timeout"]
    assert visibility >= 2 * conf.task_time_limit
    assert conf.worker_cancel_long_running_tasks_on_connection_loss
    assert sorted(q.name for q in conf.task_queues) == ["decoder", "prior", "upsampler"]


def _messages(folder: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.msg"))]


@pytest.mark.parametrize("stage", list(Stage))
def test_filesystem_broker_gets_named_task_on_its_queue(tmp_path: Path, stage: Stage) -> None:
    settings = Settings(data_dir=tmp_path)
    celery = make_celery(settings)
    task_id = enqueue_stage(celery, "job-1", stage, 2)
    (message,) = _messages(settings.broker_dir / "queue")
    headers = message["headers"]
    assert isinstance(headers, dict)
    assert headers["task"] == f"render.{stage}" and headers["id"] == task_id == f"job-1.{stage}.2"
    properties = message["properties"]
    assert isinstance(properties, dict)
    assert properties["delivery_info"]["routing_key"] == stage.value
    CeleryStageQueue(celery).check()  # the filesystem broker is always reachable


def test_dead_broker_is_queue_unavailable_fast(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0")
    queue = CeleryStageQueue(make_celery(settings), retry_after_s=9)
    started = time.monotonic()
    with pytest.raises(QueueUnavailable, match="render.prior for job j") as caught:
        queue.enqueue("j", Stage.prior, 0)
    assert caught.value.retry_after_s == 9
    with pytest.raises(QueueUnavailable, match="unreachable"):
        queue.check()
    assert time.monotonic() - started < 15
