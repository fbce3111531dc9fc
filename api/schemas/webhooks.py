"""Webhook schemas: the signing secret and the delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

DeliveryStatus = Literal["pending", "sending", "delivered", "failed"]


class WebhookSecretPublic(BaseModel):
    """Verify deliveries with it (e.g. `standardwebhooks.Webhook(secret).verify(...)`)."""

    object: Literal["webhook_secret"] = "webhook_secret"
    secret: str


class WebhookAttemptPublic(BaseModel):
    number: int
    status_code: int | None
    error: str | None
    started_at: datetime
    duration_ms: int


class WebhookDeliveryPublic(BaseModel):
    """One event sent to the job's webhook_url; its id is the `webhook-id` header."""

    id: str
    event: str
    url: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    attempt_log: list[WebhookAttemptPublic]


class WebhookDeliveriesPublic(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookDeliveryPublic]
