"""Waiting for a job on the sync (OpenAI) path: poll its row from the event loop, no thread held.

Each poll borrows a thread-pool thread for one short read; between polls the request only
sleeps on the event loop, so many waiting requests cost no threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from shared.db import jobs as job_store
from shared.db.states import TERMINAL

FIRST_POLL_S = 0.1
MAX_POLL_S = 1.0
POLL_GROWTH = 1.5


@dataclass(frozen=True)
class JobOutcome:
    """What the sync endpoints need of a job: its state and its published images."""

    job_id: str
    status: str
    created_at: datetime
    error_code: str | None
    error_message: str | None
    status_reason: str | None
    images: tuple[tuple[int, str], ...]  # (index, storage key) of each published image

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


def read_outcome(factory: sessionmaker[Session], job_id: str) -> JobOutcome:
    """The job's state now (one short read)."""
    with factory() as session:
        job = job_store.get_job(session=session, job_id=job_id)
        images = job_store.images_for_job(session=session, job_id=job_id)
        return JobOutcome(
            job_id=job.id,
            status=job.status,
            created_at=job.created_at,
            error_code=job.error_code,
            error_message=job.error_message,
            status_reason=job.status_reason,
            images=tuple(sorted((image.index, image.storage_key) for image in images)),
        )


async def wait_for_job(
    factory: sessionmaker[Session],
    job_id: str,
    timeout_s: float,
    *,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> JobOutcome:
    """Poll until the job ends or `timeout_s` passes; its last state either way.

    `gone` (e.g. request.is_disconnected) stops the wait early: the job runs on regardless.
    A job held for moderation review is not finished, so the wait goes on until the timeout.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    interval = FIRST_POLL_S
    while True:
        outcome = await run_in_threadpool(read_outcome, factory, job_id)
        remaining = deadline - loop.time()
        if outcome.finished or remaining <= 0 or (gone is not None and await gone()):
            return outcome
        await asyncio.sleep(min(interval, remaining))
        interval = min(MAX_POLL_S, interval * POLL_GROWTH)
