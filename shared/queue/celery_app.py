"""make_celery(settings): a Celery app configured for long GPU stage tasks (no tasks defined here).

Why each setting: the job-queue-reliability reference (late acks, prefetch 1,
visibility timeout above the hard limit). Job state lives in SQL,
so there is no result backend; delivery is at least once and the tasks are idempotent.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Queue

from shared.db.states import STAGE_ORDER
from shared.queue.filesystem_transport import TRANSPORT as FILESYSTEM_TRANSPORT
from shared.settings import Settings

# Redis: sweep unacked messages of dead workers every ~5 s instead of ~100 s.
UNACKED_RESTORE_INTERVAL_S = 5
# Kombu's BRPOP waits 1 s; its half-open connection check runs every this many seconds.
HEALTH_CHECK_INTERVAL_S = 10
SOFT_SHUTDOWN_TIMEOUT_S = 45.0
# Filesystem broker (the embedded default): kombu sleeps this long whenever a poll finds
# nothing it may take, which with prefetch 1 is after every message. At kombu's default of
# 1 s a message waited ~1 s and 200 leftover messages ~200 s; at 0.02 s a message is picked
# up in ~0.02 s for ~1% of a core while idle (bench/bench_broker.py, docs/benchmarks.md).
FILESYSTEM_POLLING_S = 0.02
# ... and its worker (the embedded default has one) may hold one message beyond the running
# one, so the pool child finds its next stage there when it finishes, instead of idling
# through that sleep after every message (~20% of the time at batch 1, ~23% at batch 8:
# docs/benchmarks.md "Service images/s"). Prefetch 1 stays the rule for Redis, whose
# visibility clock would run on a waiting message and whose fleets share queues; the
# filesystem transport has no visibility timeout, late acks still hold every message until
# its stage is done, and a drained worker hands a prefetched one back unclaimed.
FILESYSTEM_PREFETCH = 2
# Celery's own publish retry, for publishes other than the stage messages (those go through
# shared/queue/dispatch.py, which retries a refused publish once and a timed-out one never).
PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0.0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}


def task_name(stage: str) -> str:
    """The registered name of a stage's task: render.prior, render.decoder, render.upsampler."""
    return f"render.{stage}"


def _queue(name: str) -> Queue:
    return Queue(name, routing_key=name)  # type: ignore[no-untyped-call]


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_url.startswith("filesystem://"):
        folders = {
            "data_folder_in": settings.broker_dir / "queue",
            "data_folder_out": settings.broker_dir / "queue",
            "control_folder": settings.broker_dir / "control",
            "processed_folder": settings.broker_dir / "processed",
        }
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        return {
            **{k: str(v) for k, v in folders.items()},
            "store_processed": False,
            "polling_interval": FILESYSTEM_POLLING_S,
        }
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return {
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": UNACKED_RESTORE_INTERVAL_S,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": settings.broker_connect_timeout_s,
            # A hung Redis (accepting, never answering) fails a publish instead of hanging it.
            "socket_timeout": settings.broker_socket_timeout_s,
            # A producer (the API's publish, /readyz) connects once, not in kombu's retry loop,
            # which sleeps 2 s between tries: a refused broker answers at once, a hung one
            # within the socket timeout. The worker's consumer reconnects in Celery's own loop
            # (broker_connection_retry*, its retries passed explicitly), which this leaves alone.
            "max_retries": 0,
            "socket_keepalive": True,
            "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        }
    return {}


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration mapping for `settings`."""
    serverless = settings.broker_url.startswith(("filesystem://", "memory://"))
    filesystem = settings.broker_url.startswith("filesystem://")
    return {
        "broker_url": settings.broker_url,
        # kombu's filesystem transport with whole-file publishes (its own can hand a consumer
        # an empty file, which stopped the worker: shared/queue/filesystem_transport.py).
        **({"broker_transport": FILESYSTEM_TRANSPORT} if filesystem else {}),
        "broker_transport_options": _transport_options(settings),
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.broker_connect_timeout_s,
        "task_queues": [_queue(stage.value) for stage in STAGE_ORDER],
        "task_default_queue": STAGE_ORDER[0].value,
        "task_routes": {task_name(s.value): {"queue": s.value} for s in STAGE_ORDER},
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A task killed by its hard time limit is handed back, not acked and lost; the worker
        # releases its claim first (worker/tasks/request.py) and the database counts attempts.
        "task_acks_on_timeout": False,
        "worker_prefetch_multiplier": FILESYSTEM_PREFETCH if filesystem else 1,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        "task_publish_retry": True,
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_soft_shutdown_timeout": SOFT_SHUTDOWN_TIMEOUT_S,
        # The filesystem transport polls; remote control over it only adds polling load.
        "worker_enable_remote_control": not serverless,
        "worker_hijack_root_logger": False,
    }


def make_celery(settings: Settings) -> Celery:
    """A Celery app for `settings` with the three stage queues and reliability settings."""
    app = Celery("unclip", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app
