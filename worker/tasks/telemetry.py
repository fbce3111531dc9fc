"""What a stage run tells the operator: JSON log lines bound to its job, and its metrics.

Connected to Celery's signals, so the stage tasks carry no logging or metrics code of their
own: `setup_logging` makes every worker line structured (shared/logging.py), `task_prerun`
binds job_id, stage and attempt for the lines of the run, and `task_postrun` records how
long a completed stage took, its batch size (1 unless the run reported its own), and the
job's end when the run ended it.
"""

from __future__ import annotations

import time
from typing import Any

from celery import signals

from shared import metrics
from shared.db.states import Stage, next_stage
from shared.logging import bind_job, clear_job, configure_logging
from shared.settings import get_settings

_started: dict[str, float] = {}  # task id -> monotonic start of its run in this process


def finished_status(stage: str, outcome: object) -> str | None:
    """The terminal status a stage run's outcome gave its job, None if the job goes on."""
    if outcome == "done" and next_stage(Stage(stage)) is None:
        return "succeeded"
    if outcome == "failed":  # a retried failure raises Retry instead of returning "failed"
        return "failed"
    return None


def _on_setup_logging(loglevel: Any = None, **_: Any) -> None:
    configure_logging(level=loglevel or "INFO", log_format=get_settings().fleet.log_format)


def _on_task_prerun(
    task_id: str | None = None, task: Any = None, kwargs: dict[str, Any] | None = None, **_: Any
) -> None:
    stage = getattr(task, "stage", None)
    if stage is None or task_id is None:
        return
    kwargs = kwargs or {}
    clear_job()
    # The message's attempt; the stage task rebinds it to its claim's once it has claimed.
    bind_job(job_id=kwargs.get("job_id"), stage=str(stage), attempt=kwargs.get("attempt"))
    metrics.reset_batch_observed()
    _started[task_id] = time.monotonic()


def record_stage_run(stage: str, outcome: object, seconds: float | None) -> None:
    """Metrics of one job's stage run: its time if it completed the stage, the job's end.

    Celery's task_postrun calls it for the job a message carried; a batch calls it for each
    job it ran beside that one (worker/tasks/batching.py), whose runs Celery never sees.
    """
    if outcome == "done" and seconds is not None:
        metrics.observe_stage(stage, seconds)
    status = finished_status(stage, outcome)
    if status is not None:
        metrics.count_finished(status)


def _on_task_postrun(
    task_id: str | None = None, task: Any = None, retval: Any = None, **_: Any
) -> None:
    stage = getattr(task, "stage", None)
    started = _started.pop(task_id or "", None)
    if stage is None:
        return
    stage = str(stage)
    record_stage_run(stage, retval, None if started is None else time.monotonic() - started)
    if retval == "done" and not metrics.batch_observed():
        metrics.observe_batch(stage, 1)  # unbatched: a batch reports its own size
    clear_job()


def connect() -> None:
    """Connect logging and metrics to the worker's Celery signals (idempotent)."""
    signals.setup_logging.connect(_on_setup_logging, weak=False, dispatch_uid="telemetry-logs")
    signals.task_prerun.connect(_on_task_prerun, weak=False, dispatch_uid="telemetry-prerun")
    signals.task_postrun.connect(_on_task_postrun, weak=False, dispatch_uid="telemetry-postrun")
