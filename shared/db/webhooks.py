"""Webhook deliveries, dispatcher side: claim due ones, record each attempt, redeliver, the log.

A delivery's `attempts` only ever grows, so attempt numbers are unique and in time order for
the delivery's whole life, redeliveries included; the retry schedule reads the same count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from shared.db.models.webhook_delivery import WebhookAttempt, WebhookDelivery
from shared.errors import Conflict
from shared.webhooks.schedule import retry_delay_s
from shared.webhooks.targets import target_of

# With a per-receiver limit, due deliveries are read a page at a time, passing over those whose
# receiver has its share of slots, up to this many per claim (a backlog for one dead receiver
# must not hide the others' deliveries behind it, nor be read whole at every poll).
CLAIM_PAGE = 128
CLAIM_SCAN_LIMIT = 1024


@dataclass(frozen=True)
class AttemptOutcome:
    """What one try of a delivery came to; `final`: not to be retried (a refused target)."""

    status_code: int | None
    error: str | None
    started_at: datetime
    duration_ms: int
    final: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _due(now: datetime) -> ColumnElement[bool]:
    """Pending and due, or sending under a lease that lapsed (its dispatcher died); and no
    other delivery of the job is being sent, so a job's events go out in order."""
    other = aliased(WebhookDelivery)
    job_sending = exists().where(other.job_id == WebhookDelivery.job_id,
                                 other.status == "sending", other.lease_until >= now)  # fmt: skip
    return and_(
        or_(
            and_(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now),
            and_(WebhookDelivery.status == "sending", WebhookDelivery.lease_until < now),
        ),
        ~job_sending,
    )


def _due_rows(
    session: Session, due: ColumnElement[bool], *, page: int, most: int
) -> Iterator[tuple[str, str]]:
    """(id, url) of due deliveries, longest due first, read `page` rows at a time."""
    order = (WebhookDelivery.next_attempt_at, WebhookDelivery.id)
    after: ColumnElement[bool] | None = None
    for _ in range(0, most, page):
        query = select(WebhookDelivery.id, WebhookDelivery.url, order[0]).where(due)
        if after is not None:
            query = query.where(after)
        rows = session.execute(query.order_by(*order).limit(page)).all()
        for row in rows:
            yield row.id, row.url
        if len(rows) < page:
            return
        last = rows[-1]
        after = or_(order[0] > last.next_attempt_at,
                    and_(order[0] == last.next_attempt_at, order[1] > last.id))  # fmt: skip


def claim_due(
    session: Session,
    *,
    now: datetime,
    limit: int,
    lease_s: float,
    per_target: int | None = None,
    busy: Mapping[str, int] | None = None,
) -> list[WebhookDelivery]:
    """Take up to `limit` due deliveries (pending and due, or sending with a lapsed lease).

    With `per_target`, at most that many go to one receiver (shared/webhooks/targets.py
    `target_of`), counting the `busy` ones the caller is sending already. Each is claimed with
    a conditional UPDATE, so several dispatchers never send one twice at the same time; its
    `lease_until` is the claim's token. The caller commits before sending.
    """
    due = _due(now)
    taken = Counter(busy or {})
    claimed: list[WebhookDelivery] = []
    pages = (limit, limit) if per_target is None else (CLAIM_PAGE, CLAIM_SCAN_LIMIT)
    for delivery_id, url in _due_rows(session, due, page=pages[0], most=pages[1]):
        target = target_of(url)
        if per_target is not None and taken[target] >= per_target:
            continue
        result = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, due)
            .values(status="sending", lease_until=now + timedelta(seconds=lease_s))
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) == 1:
            taken[target] += 1
            claimed.append(session.get_one(WebhookDelivery, delivery_id, populate_existing=True))
            if len(claimed) == limit:
                break
    return claimed


def _settled(outcome: AttemptOutcome, number: int) -> dict[str, object]:
    """The delivery's columns after attempt `number`: delivered, due again, or failed."""
    finished = outcome.started_at + timedelta(milliseconds=outcome.duration_ms)
    values: dict[str, object] = {"last_status_code": outcome.status_code, "lease_until": None}
    if outcome.delivered:
        values.update(status="delivered", delivered_at=finished)
        return values
    delay = None if outcome.final else retry_delay_s(number)
    if delay is None:
        values.update(status="failed")
    else:
        values.update(status="pending", next_attempt_at=finished + timedelta(seconds=delay))
    return values


def record_attempt(session: Session, delivery: WebhookDelivery, outcome: AttemptOutcome) -> bool:
    """Log the attempt; the delivery is delivered, scheduled again, or failed for good.

    `delivery` is the claimed row. False when the claim was lost meanwhile (its lease lapsed
    and another dispatcher took it, or it was redelivered): the attempt is still logged and
    counted, and the delivery's state is left to whoever holds it now.
    """
    # Counted first: the row stays locked to this transaction, so numbers never repeat.
    session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == delivery.id)
        .values(attempts=WebhookDelivery.attempts + 1)
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    number = session.scalar(
        select(WebhookDelivery.attempts).where(WebhookDelivery.id == delivery.id)
    )
    if number is None:  # the delivery went with its job: nothing to log the attempt under
        return False
    session.add(WebhookAttempt(
        delivery_id=delivery.id, number=number, status_code=outcome.status_code,
        error=outcome.error, started_at=outcome.started_at, duration_ms=outcome.duration_ms,
    ))  # fmt: skip
    held = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id, WebhookDelivery.status == "sending",
               WebhookDelivery.lease_until == delivery.lease_until)
        .values(**_settled(outcome, number))
        .execution_options(synchronize_session=False)
    )  # fmt: skip
    return getattr(held, "rowcount", 0) == 1


def deliveries_for_job(
    session: Session, job_id: str
) -> list[tuple[WebhookDelivery, Sequence[WebhookAttempt]]]:
    """The job's deliveries, oldest first, each with its attempts in the order they were made."""
    deliveries = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    ).all()  # fmt: skip
    attempts = session.scalars(
        select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_([d.id for d in deliveries]))
        .order_by(WebhookAttempt.started_at, WebhookAttempt.number)
    ).all()  # fmt: skip
    by_delivery: dict[str, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    for attempt in attempts:
        by_delivery[attempt.delivery_id].append(attempt)
    return [(d, by_delivery[d.id]) for d in deliveries]


def redeliver(session: Session, job_id: str, *, now: datetime) -> list[str]:
    """Send again, now: every failed delivery of the job, or else its latest one. Ids kept.

    Attempts keep counting, so a delivery whose retries ran out gets one more try and one
    still on its schedule is tried at once and keeps the rest of it. Conflict while the chosen
    delivery is being sent (a second send beside it would be a duplicate).
    """
    rows = session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    ).all()  # fmt: skip
    chosen = [d for d in rows if d.status == "failed"] or rows[:1]
    idle = or_(WebhookDelivery.status != "sending", WebhookDelivery.lease_until < now)
    for delivery in chosen:
        result = session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery.id, idle)
            .values(status="pending", next_attempt_at=now, lease_until=None)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        if getattr(result, "rowcount", 0) != 1:
            raise Conflict(
                f"webhook delivery {delivery.id} of job {job_id} is being sent right now; "
                f"redeliver it once that attempt is in its log (GET /v1/jobs/{job_id}/webhooks)",
                code="webhook_delivery_in_flight",
            )
        session.expire(delivery)  # the log read after this shows the row as it is now
    return [d.id for d in chosen]
