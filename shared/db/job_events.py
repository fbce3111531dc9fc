"""Job events: recorded in the transaction of the change they report, read back in order.

Every status change and progress write appends one row here (queued, started, progress,
stage_done, then one terminal event). SSE streams replay them after Last-Event-ID, and a job
with a webhook_url gets a delivery row for each event kind it subscribed to, in the same
transaction: nothing is announced that did not happen, and nothing that happened is lost.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

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


@dataclass(frozen=True)
class DeliveryTarget:
    """What a job's event needs to know of its webhook (set at submission, never changed)."""

    job_id: str
    url: str | None
    events: str | None  # the webhook_events column: a comma-separated choice
    scope: str

    @classmethod
    def of(cls, job_id: str, url: str | None, events: str | None, key_id: str | None) -> Self:
        return cls(job_id, url, events, key_id or LOCAL_SCOPE)

    def subscribed(self, kind: str) -> bool:
        return kind in (self.events or "completed").split(",")


def delivery_target(session: Session, job_id: str) -> DeliveryTarget | None:
    """The job's webhook target: from its row where this session has it loaded, else three
    columns read (not the whole row, as an event is recorded in every claim and completion)."""
    job = session.identity_map.get(identity_key(Job, job_id))
    if isinstance(job, Job):
        return DeliveryTarget.of(job.id, job.webhook_url, job.webhook_events, job.api_key_id)
    row = session.execute(
        select(Job.webhook_url, Job.webhook_events, Job.api_key_id).where(Job.id == job_id)
    ).one_or_none()
    if row is None:
        return None
    return DeliveryTarget.of(job_id, row.webhook_url, row.webhook_events, row.api_key_id)


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


def _enqueue_delivery(session: Session, target: DeliveryTarget, event: str,
                      data: dict[str, Any], now: datetime) -> None:  # fmt: skip
    kind = webhook_kind(event)
    if not target.url or kind is None or not target.subscribed(kind):
        return
    payload = {"type": f"job.{event}", "job_id": target.job_id, "data": data}
    if kind == "progress" and _coalesce_progress(session, target.job_id, payload):
        return
    session.add(WebhookDelivery(
        id=f"msg_{uuid.uuid4().hex}", job_id=target.job_id, scope=target.scope,
        url=target.url, event=kind, payload=payload, status="pending", attempts=0,
        next_attempt_at=now,
    ))  # fmt: skip


def record_event(
    session: Session,
    job_id: str,
    event: str,
    data: dict[str, Any] | None = None,
    *,
    target: DeliveryTarget | None = None,
) -> None:
    """Append `event` for the job (and its webhook delivery); the caller's transaction commits.

    `target` is the job's webhook as the caller already read it (a claim's); else it is read.
    """
    if event not in EVENT_NAMES:
        raise ValueError(f"event {event!r} is not one of {sorted(EVENT_NAMES)}")
    now = utcnow()
    body = dict(data or {})
    session.add(JobEvent(job_id=job_id, event=event, data=body, created_at=now))
    if target is None:
        target = delivery_target(session, job_id)
    if target is not None and target.url:
        _enqueue_delivery(session, target, event, body, now)


def record_status_event(
    session: Session, job_id: str, status: str, *, target: DeliveryTarget | None = None
) -> None:
    """The event a move to `status` announces (none for a status that is no event)."""
    if status in TERMINAL_EVENTS:
        data: dict[str, Any] = {}
        if status == "succeeded":
            indices = session.scalars(
                select(JobImage.index).where(JobImage.job_id == job_id, JobImage.published)
                .order_by(JobImage.index)
            ).all()  # fmt: skip
            data["image_indices"] = list(indices)
        record_event(session, job_id, status, data, target=target)
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
