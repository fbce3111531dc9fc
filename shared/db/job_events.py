"""Job events: recorded in the transaction of the change they report, read back in order.

Every status change and progress write appends one row here (queued, started, progress,
stage_done, then one terminal event). SSE streams replay them after Last-Event-ID, and a job
with a webhook_url gets a delivery row for each event kind it subscribed to, in the same
transaction: nothing is announced that did not happen, and nothing that happened is lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.db.base import utcnow
from shared.db.models import Job, JobImage
from shared.db.models.job_event import JobEvent
from shared.db.models.webhook_delivery import WebhookDelivery

TERMINAL_EVENTS = frozenset({"succeeded", "failed", "cancelled", "rejected", "held", "expired"})
EVENT_NAMES = frozenset({"queued", "started", "progress", "stage_done"}) | TERMINAL_EVENTS
LOCAL_SCOPE = "local"
STAGES = frozenset({"prior", "decoder", "upsampler"})


def webhook_kind(event: str) -> str | None:
    """The webhook_events choice that covers `event` (None: never delivered by webhook)."""
    if event in TERMINAL_EVENTS:
        return "completed"
    return event if event in ("started", "progress") else None


def subscribed(job: Job, kind: str) -> bool:
    chosen = (getattr(job, "webhook_events", None) or "completed").split(",")
    return kind in chosen


def _coalesce_progress(session: Session, job_id: str, payload: dict[str, Any]) -> bool:
    """Fold a progress event into the job's progress delivery waiting to be sent (or to be
    retried), so a job has at most one progress delivery waiting beside one being sent."""
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id, WebhookDelivery.event == "progress",
               WebhookDelivery.status == "pending")
        .values(payload=payload)
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    return bool(getattr(result, "rowcount", 0))


def _enqueue_delivery(session: Session, job: Job, event: str, data: dict[str, Any],
                      now: datetime) -> None:  # fmt: skip
    kind = webhook_kind(event)
    if not job.webhook_url or kind is None or not subscribed(job, kind):
        return
    payload = {"type": f"job.{event}", "job_id": job.id, "data": data}
    if kind == "progress" and _coalesce_progress(session, job.id, payload):
        return
    session.add(WebhookDelivery(
        id=f"msg_{uuid.uuid4().hex}", job_id=job.id, scope=job.api_key_id or LOCAL_SCOPE,
        url=job.webhook_url, event=kind, payload=payload, status="pending", attempts=0,
        next_attempt_at=now,
    ))  # fmt: skip


def record_event(
    session: Session, job_id: str, event: str, data: dict[str, Any] | None = None
) -> None:
    """Append `event` for the job (and its webhook delivery); the caller's transaction commits."""
    if event not in EVENT_NAMES:
        raise ValueError(f"event {event!r} is not one of {sorted(EVENT_NAMES)}")
    now = utcnow()
    body = dict(data or {})
    session.add(JobEvent(job_id=job_id, event=event, data=body, created_at=now))
    job = session.get(Job, job_id)
    if job is not None and job.webhook_url:
        _enqueue_delivery(session, job, event, body, now)


def record_status_event(session: Session, job_id: str, status: str) -> None:
    """The event a move to `status` announces (none for a status that is no event)."""
    if status in TERMINAL_EVENTS:
        data: dict[str, Any] = {}
        if status == "succeeded":
            indices = session.scalars(
                select(JobImage.index).where(JobImage.job_id == job_id, JobImage.published)
                .order_by(JobImage.index)
            ).all()  # fmt: skip
            data["image_indices"] = list(indices)
        record_event(session, job_id, status, data)
    elif status == "queued":  # a reviewer released a held job back to the queue
        record_event(session, job_id, "queued")
    elif status in STAGES:  # a stage claimed (every stage change of a job goes through one)
        record_event(session, job_id, "started", {"stage": status})


def events_after(
    session: Session, job_id: str, after_id: int = 0, *, limit: int = 500
) -> Sequence[JobEvent]:
    """The job's events with an id above `after_id`, oldest first."""
    return session.scalars(
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
        .order_by(JobEvent.id)
        .limit(limit)
    ).all()
