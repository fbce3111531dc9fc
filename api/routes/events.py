"""GET /v1/jobs/{id}/events: the job's events as server-sent events, resumable by Last-Event-ID.

Events are read from the job_events table (written with each change, by any API process or
worker), so a reconnect resumes after the id it saw, with nothing lost or repeated, and a
finished job answers at once. The stream ends once the job is at rest and every event is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.auth import owner_filter
from api.deps import PrincipalDep, SessionFactoryDep, SettingsDep
from api.shutdown import shutting_down
from shared.db.claims import job_status
from shared.db.job_events import TERMINAL_EVENTS, events_after
from shared.db.ownership import get_owned_job
from shared.db.states import JobStatus
from shared.errors import InvalidInput
from shared.image_urls import signed_image_url
from shared.settings import Settings

router = APIRouter(prefix="/v1", tags=["jobs"])
POLL_S = 0.25
PAGE = 500  # events read per query
MAX_EVENT_ID = 2**63 - 1


def resume_after(last_event_id: Annotated[str | None, Header(max_length=40)] = None) -> int:
    """The id after which to resume (0: from the start); a dependency, so a bad one is a 400
    before the stream starts."""
    if last_event_id is None or last_event_id == "":
        return 0
    if not last_event_id.isdigit() or int(last_event_id) > MAX_EVENT_ID:
        raise InvalidInput(
            f"Last-Event-ID {last_event_id[:40]!r} is not an event id of this stream (a whole "
            "number it sent)", param="Last-Event-ID",
        )  # fmt: skip
    return int(last_event_id)


@dataclass(frozen=True)
class _Page:
    events: list[ServerSentEvent]
    caught_up: bool  # fewer than PAGE came: nothing more is recorded yet
    at_rest: bool  # the job's status, read before the events, names a final event


def _read(factory: sessionmaker[Session], settings: Settings, job_id: str, after: int) -> _Page:
    """The events after `after`. The status is read first: a job at rest then has every event
    up to its final one recorded (each is written in the transaction of its change)."""
    with factory() as session:
        status = job_status(session, job_id)
        rows = events_after(session, job_id, after, limit=PAGE)
        # A succeeded job deleted later (or expired by retention) has no images to link.
        gone = status == JobStatus.expired.value
        out = []
        for row in rows:
            data: dict[str, Any] = {"job_id": job_id, **row.data}
            if row.event == "succeeded" and "image_indices" in data:
                indices = [] if gone else data["image_indices"]
                data["images"] = [signed_image_url(settings, job_id, i) for i in indices]
            out.append(ServerSentEvent(event=row.event, id=str(row.id), data=data))
        return _Page(out, len(rows) < PAGE, status is None or status in TERMINAL_EVENTS)


def owned_job_id(job_id: str, factory: SessionFactoryDep, principal: PrincipalDep) -> str:
    """The job id if the caller may see it (404 otherwise), checked before the stream starts;
    its session is closed at once, so a long stream holds no database connection."""
    with factory() as session:
        get_owned_job(session=session, job_id=job_id, owner=owner_filter(principal))
    return job_id


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse)
async def stream_job_events(
    job_id: Annotated[str, Depends(owned_job_id)],
    after: Annotated[int, Depends(resume_after)],
    request: Request,
    factory: SessionFactoryDep,
    settings: SettingsDep,
) -> AsyncIterator[ServerSentEvent]:
    """queued, started, progress, stage_done, then one of succeeded, failed, cancelled, held,
    rejected or expired; each with an id to resume after (the Last-Event-ID header).

    The stream ends once the job is at rest (its status is one of those final events) and
    every event recorded until then was sent. So a held job that a reviewer released goes on
    past its `held`, a finished job deleted later sends its `succeeded` and then `expired`, and
    a reconnect after the last event of a finished job ends at once. It also ends when the
    server shuts down (the client reconnects with Last-Event-ID).
    """
    while True:
        page = await run_in_threadpool(_read, factory, settings, job_id, after)
        for event in page.events:
            yield event
            after = int(event.id or after)
        if page.caught_up and page.at_rest:
            return
        if await request.is_disconnected() or shutting_down(request):
            return
        if page.caught_up:
            await asyncio.sleep(POLL_S)
