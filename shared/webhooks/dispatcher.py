"""The webhook dispatcher: sends due deliveries from the outbox, signed, and records each try."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.models.webhook_delivery import WebhookDelivery
from shared.db.webhooks import AttemptOutcome, claim_due, record_attempt
from shared.settings import Settings
from shared.webhooks.signing import signed_headers, webhook_secret

log = logging.getLogger(__name__)
BATCH = 16
# A claimed delivery is the dispatcher's for this long past the receiver's timeout.
LEASE_MARGIN_S = 30.0

ImageUrl = Callable[[str, int], str]


class Dispatcher:
    """Sends webhook deliveries; several copies may run (deliveries are claimed first)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        http: httpx.Client | None = None,
        image_url: ImageUrl | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.http = http or httpx.Client(timeout=settings.webhooks.timeout_s,
                                         follow_redirects=False)  # fmt: skip
        self.image_url = image_url

    def body(self, delivery: WebhookDelivery) -> str:
        """The JSON sent: the stored event, with fresh signed URLs for finished images."""
        payload: dict[str, Any] = dict(delivery.payload)
        data = dict(payload.get("data") or {})
        if self.image_url is not None and "image_indices" in data:
            data["images"] = [self.image_url(delivery.job_id, i) for i in data["image_indices"]]
        payload["data"] = data
        payload["timestamp"] = utcnow().isoformat()
        return json.dumps(payload, separators=(",", ":"), default=str)

    def send(self, delivery: WebhookDelivery) -> AttemptOutcome:
        body = self.body(delivery)
        secret = webhook_secret(self.settings.api_key_secret.get_secret_value(), delivery.scope)
        started, clock = utcnow(), time.monotonic()
        headers = signed_headers(secret, delivery.id, body, started)
        try:
            response = self.http.post(delivery.url, content=body, headers=headers)
            status, error = response.status_code, None
        except httpx.HTTPError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        elapsed_ms = int((time.monotonic() - clock) * 1000)
        return AttemptOutcome(status, error, started, elapsed_ms)

    def run_once(self) -> int:
        """Send what is due now; the number of attempts made."""
        lease = self.settings.webhooks.timeout_s + LEASE_MARGIN_S
        with self.sessions.begin() as session:
            claimed = claim_due(session, now=utcnow(), limit=BATCH, lease_s=lease)
            session.expunge_all()
        for delivery in claimed:
            outcome = self.send(delivery)
            with self.sessions.begin() as session:
                record_attempt(session, delivery, outcome)
            log.info("webhook %s (%s, job %s) attempt %d: %s", delivery.id, delivery.event,
                     delivery.job_id, delivery.attempts + 1,
                     outcome.status_code or outcome.error)  # fmt: skip
        return len(claimed)

    def run_forever(self, stop: threading.Event) -> None:
        """Dispatch until `stop` is set; a database hiccup is logged and tried again."""
        while not stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("webhook dispatch failed; trying again")
                busy = 0
            if not busy:
                stop.wait(self.settings.webhooks.poll_interval_s)
