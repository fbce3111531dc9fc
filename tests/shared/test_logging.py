"""Structured logs: stdlib and structlog lines are JSON objects with the job context keys."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from shared.logging import bind_job, clear_job, configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging(level="INFO", stream=buffer)
    # Tests that run a stage task in this process bind a job without Celery's postrun signal
    # to clear it: start each of these tests outside any job.
    clear_job()
    yield buffer
    clear_job()
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_stdlib_lines_carry_the_bound_job_and_null_outside_it(stream: io.StringIO) -> None:
    log = logging.getLogger("celery.app.trace")
    log.info("before %s", "any job")
    bind_job(job_id="job-1", stage="decoder", attempt=2)
    log.warning("Task %s succeeded", "render.decoder")
    clear_job()
    log.info("after")
    before, during, after = _lines(stream)
    assert (before["job_id"], before["stage"], before["attempt"]) == (None, None, None)
    assert before["event"] == "before any job" and before["level"] == "info"
    assert (during["job_id"], during["stage"], during["attempt"]) == ("job-1", "decoder", 2)
    assert during["event"] == "Task render.decoder succeeded"
    assert during["logger"] == "celery.app.trace" and during["level"] == "warning"
    assert after["job_id"] is None


def test_structlog_lines_and_tracebacks_are_json_too(stream: io.StringIO) -> None:
    bind_job(job_id="job-2", stage="prior", attempt=1)
    structlog.get_logger("worker").info("stage started", steps=4)
    try:
        raise ValueError("bad tensor")
    except ValueError:
        logging.getLogger("worker.tasks.base").exception("stage failed")
    started, failed = _lines(stream)
    assert (started["event"], started["steps"], started["job_id"]) == ("stage started", 4, "job-2")
    assert failed["job_id"] == "job-2" and failed["level"] == "error"
    assert "bad tensor" in json.dumps(failed["exception"])
