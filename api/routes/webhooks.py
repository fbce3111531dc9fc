"""Webhooks: the key's signing secret, a job's delivery log, and redelivery."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter

from api.auth import owner_filter
from api.deps import PrincipalDep, SessionDep, SettingsDep
from api.schemas.errors import error_responses
from api.schemas.webhooks import (
    DeliveryStatus,
    WebhookAttemptPublic,
    WebhookDeliveriesPublic,
    WebhookDeliveryPublic,
    WebhookSecretPublic,
)
from shared.db.base import utcnow
from shared.db.ownership import get_owned_job
from shared.db.webhooks import deliveries_for_job, redeliver
from shared.webhooks.signing import webhook_secret

router = APIRouter(prefix="/v1", tags=["webhooks"])


@router.get("/webhooks/secret", response_model=WebhookSecretPublic)
def read_webhook_secret(settings: SettingsDep, principal: PrincipalDep) -> WebhookSecretPublic:
    """The secret your webhook deliveries are signed with (Standard Webhooks, `whsec_...`)."""
    secret = webhook_secret(settings.api_key_secret.get_secret_value(), principal.scope)
    return WebhookSecretPublic(secret=secret)


def _log(session: SessionDep, job_id: str) -> WebhookDeliveriesPublic:
    return WebhookDeliveriesPublic(data=[
        WebhookDeliveryPublic(
            id=d.id, event=d.event, url=d.url, status=cast(DeliveryStatus, d.status),
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
            delivered_at=d.delivered_at, created_at=d.created_at,
            attempt_log=[WebhookAttemptPublic(number=a.number, status_code=a.status_code,
                                              error=a.error, started_at=a.started_at,
                                              duration_ms=a.duration_ms) for a in attempts],
        )
        for d, attempts in deliveries_for_job(session, job_id)
    ])  # fmt: skip


@router.get("/jobs/{job_id}/webhooks", response_model=WebhookDeliveriesPublic)
def list_job_webhooks(
    job_id: str, session: SessionDep, principal: PrincipalDep
) -> WebhookDeliveriesPublic:
    """Every delivery of the job's webhook, with each attempt's time and status code."""
    get_owned_job(session=session, job_id=job_id, owner=owner_filter(principal))
    return _log(session, job_id)


@router.post(
    "/jobs/{job_id}/webhooks/redeliver", response_model=WebhookDeliveriesPublic,
    responses=error_responses(409),  # the chosen delivery is being sent right now
)  # fmt: skip
def redeliver_job_webhooks(
    job_id: str, session: SessionDep, principal: PrincipalDep
) -> WebhookDeliveriesPublic:
    """Send again: the job's failed deliveries, or else its latest one (same webhook-id)."""
    get_owned_job(session=session, job_id=job_id, owner=owner_filter(principal))
    redeliver(session, job_id, now=utcnow())
    session.commit()
    return _log(session, job_id)
