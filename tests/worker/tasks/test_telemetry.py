"""A stage run's signals: job context on its log lines, stage time, batch size and job ends."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import structlog
from prometheus_client import REGISTRY

from shared import metrics
from worker.tasks import telemetry


class _Stage:
    def __init__(self, stage: str) -> None:
        self.stage = stage


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _run(stage: str, outcome: Any, *, batch: int | None = None) -> dict[str, Any]:
    """Send prerun, (report a batch,) postrun; the log context seen inside the run."""
    task, task_id = _Stage(stage), uuid.uuid4().hex
    telemetry._on_task_prerun(task_id=task_id, task=task, kwargs={"job_id": "j-1", "attempt": 4})
    inside = structlog.contextvars.get_contextvars()
    if batch is not None:
        metrics.observe_batch(stage, batch)
    telemetry._on_task_postrun(task_id=task_id, task=task, retval=outcome)
    return inside


def test_a_run_binds_its_job_and_leaves_no_context_behind() -> None:
    inside = _run("decoder", "done")
    assert inside == {"job_id": "j-1", "stage": "decoder", "attempt": 4}
    assert not set(structlog.contextvars.get_contextvars()) & {"job_id", "stage", "attempt"}


@pytest.mark.parametrize(
    ("stage", "outcome", "status"),
    [("upsampler", "done", "succeeded"), ("prior", "done", None), ("decoder", "failed", "failed"),
     ("upsampler", "retrying", None), ("prior", "duplicate", None)],
)  # fmt: skip
def test_only_runs_that_end_the_job_count_it_finished(
    stage: str, outcome: str, status: str | None
) -> None:
    before = {s: _value("unclip_jobs_finished_total", status=s) for s in ("succeeded", "failed")}
    _run(stage, outcome)
    after = {s: _value("unclip_jobs_finished_total", status=s) for s in ("succeeded", "failed")}
    assert {s: after[s] - before[s] for s in after} == {
        s: float(s == status) for s in ("succeeded", "failed")
    }


def test_completed_runs_observe_their_time_and_batch_size() -> None:
    count = "unclip_stage_seconds_count"
    sizes = ("unclip_batch_size_count", "unclip_batch_size_sum")
    before = [_value(count, stage="prior"), *(_value(n, stage="prior") for n in sizes)]
    _run("prior", "done")  # unbatched: a batch of 1
    _run("prior", "done", batch=3)  # a batch reports its own size, once
    _run("prior", "duplicate")  # a no-op delivery is not a stage run
    after = [_value(count, stage="prior"), *(_value(n, stage="prior") for n in sizes)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 2, 4]
