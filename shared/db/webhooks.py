"""Webhook deliveries, dispatcher side: claim due ones, record each attempt, redeliver, the log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from shared.db.models.webhook_delivery import WebhookAttempt, WebhookDelivery
from shared.webhooks.schedule import retry_delay_s


@dataclass(frozen=True)
class AttemptOutcome:
    """What one try of a delivery came to."""

    status_code: int | None
    error: str | None
    started_at: datetime
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def claim_due(
    session: Session, *, now: datetime, limit: int, lease_s: float
) -> list[WebhookDelivery]:
    """Take up to `limit` due deliveries (pending and due, or sending with a lapsed lease).

    Each is claimed with a conditional UPDATE, so several dispatchers never send one twice
    at the same time. The caller commits before sending.
    """
    due = or_(
        and_(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now),
        and_(WebhookDelivery.status == "sending", WebhookDelivery.lease_until < now),
    )
    ids = session.scalars(
        select(WebhookDelivery.id).where(due).order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    ).all()  # fmt: skip
    claimed = []
    for delivery_id in ids:
        result = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, due)
            .values(status="sending", lease_until=now + timedelta(seconds=lease_s))
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) == 1:
            claimed.append(session.get_one(WebhookDelivery, delivery_id, populate_existing=True))
    return claimed


def record_attempt(session: Session, delivery: WebhookDelivery, outcome: AttemptOutcome) -> None:
    """Log the attempt; the delivery is delivered, scheduled again, or failed for good."""
    number = delivery.attempts + 1
    session.add(WebhookAttempt(
        delivery_id=delivery.id, number=number, status_code=outcome.status_code,
        error=outcome.error, started_at=outcome.started_at, duration_ms=outcome.duration_ms,
    ))  # fmt: skip
    finished = outcome.started_at + timedelta(milliseconds=outcome.duration_ms)
    values: dict[str, object] = {"attempts": number, "last_status_code": outcome.status_code,
                                 "lease_until": None}  # fmt: skip
    if outcome.delivered:
        values.update(status="delivered", delivered_at=finished)
    else:
        delay = retry_delay_s(number)
        if delay is None:
            values.update(status="failed")
        else:
            values.update(status="pending", next_attempt_at=finished + timedelta(seconds=delay))
    session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values)
        .execution_options(synchronize_session=False)
    )  # fmt: skip


def deliveries_for_job(
    session: Session, job_id: str
) -> list[tuple[WebhookDelivery, Sequence[WebhookAttempt]]]:
    """The job's deliveries, oldest first, each with its attempts in order."""
    deliveries = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    ).all()  # fmt: skip
    attempts = session.scalars(
        select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_([d.id for d in deliveries]))
        .order_by(WebhookAttempt.number)
    ).all()  # fmt: skip
    by_delivery: dict[str, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    for attempt in attempts:
        by_delivery[attempt.delivery_id].append(attempt)
    return [(d, by_delivery[d.id]) for d in deliveries]


def redeliver(session: Session, job_id: str, *, now: datetime) -> list[str]:
    """Send again: every failed delivery of the job, or else its latest one. Ids kept."""
    rows = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    ).all()  # fmt: skip
    chosen = [d for d in rows if d.status == "failed"] or rows[:1]
    for delivery in chosen:
        delivery.status, delivery.attempts = "pending", 0
        delivery.next_attempt_at, delivery.lease_until = now, None
    return [d.id for d in chosen]
