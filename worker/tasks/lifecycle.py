"""The worker's life-cycle hooks: drain on SIGTERM, and a handle on the consumer for health.

install(app, settings) runs in the worker's main process before the pool forks.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

from celery import Celery, bootsteps
from celery.apps.worker import safe_say
from celery.signals import worker_shutting_down

from shared.settings import Settings
from worker.tasks import drain
from worker.tasks.request import set_consumer


class ConsumerHandle(bootsteps.StartStopStep):  # type: ignore[misc]
    """Keeps the worker's consumer, so an unhealthy worker can cancel its queues."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, parent: Any) -> None:
        set_consumer(parent)

    def stop(self, parent: Any) -> None:
        set_consumer(None)


def install(app: Celery, settings: Settings) -> None:
    """Wire drain and health into `app` (call once, in the worker's main process)."""
    drain.prepare()
    app.steps["consumer"].add(ConsumerHandle)

    def on_shutting_down(sig: str = "", how: str = "", **_: Any) -> None:
        # Warm (SIGTERM): running stages get the drain timeout. Cold: they stop at once.
        timeout = settings.drain_timeout_s if how == "Warm" else 0.0
        drain.begin(timeout)
        # Inside a signal handler logging may deadlock; Celery writes such lines with safe_say.
        safe_say(
            f"worker: draining at {datetime.now(UTC).isoformat()}: running stages may go on for "
            f"{timeout:g} s (UNCLIP_DRAIN_TIMEOUT_S), then hand their jobs back",
            sys.__stderr__,
        )

    worker_shutting_down.connect(on_shutting_down, weak=False, dispatch_uid="unclip-drain")
