"""The worker's Celery app: make_celery(get_settings()) with the three stage tasks registered.

`celery -A worker.tasks.app ...` finds `app` here; it is built on first access, not at import.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from celery import Celery

from shared.queue.celery_app import make_celery
from shared.settings import get_settings
from worker.tasks import lifecycle, metrics_endpoint, registry, telemetry
from worker.tasks.decoder_task import DecoderTask
from worker.tasks.prior_task import PriorTask
from worker.tasks.upsampler_task import UpsamplerTask

TASK_CLASSES = (PriorTask, DecoderTask, UpsamplerTask)


def register_tasks(app: Celery) -> Celery:
    """Register render.prior, render.decoder and render.upsampler on `app`."""
    for task_class in TASK_CLASSES:
        app.register_task(task_class())
    return app


@lru_cache(maxsize=1)
def get_app() -> Celery:
    """This process's worker app, from the process's settings."""
    for observer in (telemetry, metrics_endpoint, registry):  # logs, /metrics, fleet registry
        observer.connect()
    app = register_tasks(make_celery(get_settings()))
    lifecycle.install(app, get_settings())  # drain on SIGTERM, stop consuming when unhealthy
    return app


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
