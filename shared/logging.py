"""Structured logs: every line one JSON object, our structlog lines and stdlib/Celery ones alike.

Stdlib records (Celery's, kombu's, ours through `logging.getLogger`) go through structlog's
`ProcessorFormatter`, so they get the same keys as structlog's own lines. Job context
(`job_id`, `stage`, `attempt`) lives in contextvars: bound once where a stage run starts,
it is on every line that run logs, and every worker line carries the three keys (null
outside a job), so a log query never has to guess whether a key exists.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

JOB_KEYS = ("job_id", "stage", "attempt")
LogFormat = Literal["json", "console"]


def _job_keys(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for key in JOB_KEYS:
        event_dict.setdefault(key, None)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        _job_keys,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def _renderer(log_format: LogFormat) -> list[Processor]:
    if log_format == "console":
        return [structlog.dev.ConsoleRenderer(colors=False)]
    return [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]


def configure_logging(
    *, level: int | str = logging.INFO, log_format: LogFormat = "json", stream: TextIO | None = None
) -> None:
    """Send every log record of this process to `stream` (stderr) as one structured line."""
    shared = _shared_processors()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *_renderer(log_format)],
    )  # fmt: skip
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)


def bind_job(**values: Any) -> None:
    """Add job context (job_id, stage, attempt) to every line logged from here on."""
    structlog.contextvars.bind_contextvars(**values)


def clear_job() -> None:
    """Drop the job context at the end of a stage run."""
    structlog.contextvars.unbind_contextvars(*JOB_KEYS)
