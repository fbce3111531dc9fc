"""Celery config carries the reliability settings; stage messages go by name to their queue."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.db.states import Stage
from shared.errors import QueueUnavailable
from shared.queue.celery_app import make_celery
from shared.queue.dispatch import PUBLISH_TRIES, CeleryStageQueue, enqueue_stage
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
    assert time.monotonic() - started < 2.0  # refused: one quick retry, no kombu sleeps


class _FlakyCelery:
    """send_task raises each of `errors` in turn (wrapped as kombu wraps them), then works."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def send_task(self, *args: object, **kwargs: object) -> None:
        self.calls += 1
        assert kwargs["retry"] is False  # no kombu retry loop under ours
        if self.errors:
            raise self.errors.pop(0)


def _wrapped(cause: BaseException) -> KombuOperationalError:
    try:
        raise KombuOperationalError(str(cause)) from cause
    except KombuOperationalError as exc:
        return exc


def test_a_refused_publish_is_tried_once_more() -> None:
    celery = _FlakyCelery(_wrapped(ConnectionRefusedError(111, "Connection refused")))
    assert enqueue_stage(celery, "j", Stage.prior, 0) == "j.prior.0"  # type: ignore[arg-type]
    assert celery.calls == 2


def test_a_timed_out_publish_is_not_retried() -> None:
    celery = _FlakyCelery(_wrapped(RedisTimeoutError("Timeout reading from socket")))
    with pytest.raises(QueueUnavailable, match="Timeout reading"):
        enqueue_stage(celery, "j", Stage.prior, 0)
    assert celery.calls == 1  # a hung broker costs one socket timeout, not two


def test_a_publish_refused_twice_is_queue_unavailable() -> None:
    refused = [_wrapped(ConnectionRefusedError(111, "refused")) for _ in range(2)]
    celery = _FlakyCelery(*refused)
    with pytest.raises(QueueUnavailable, match="refused"):
        enqueue_stage(celery, "j", Stage.decoder, 1)
    assert celery.calls == PUBLISH_TRIES


def test_redis_timeouts_come_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0",
                        broker_socket_timeout_s=0.7, broker_connect_timeout_s=0.3)  # fmt: skip
    conf = make_celery(settings).conf
    options = conf.broker_transport_options
    assert (options["socket_timeout"], options["socket_connect_timeout"]) == (0.7, 0.3)
    assert options["max_retries"] == 0 and conf.broker_connection_timeout == 0.3
