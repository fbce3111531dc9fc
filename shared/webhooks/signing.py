"""Per-key webhook secrets and Standard Webhooks signatures (the `standardwebhooks` package)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def webhook_secret(server_secret: str, scope: str) -> str:
    """The signing secret of one key (`scope`: its id, or the local principal's name).

    Derived from the server secret, so nothing more is stored and it is the same on every
    API process and dispatcher; rotating the server secret rotates every key's secret.
    """
    digest = hmac.new(server_secret.encode(), f"webhook-secret:{scope}".encode(), hashlib.sha256)
    return SECRET_PREFIX + base64.b64encode(digest.digest()).decode("ascii")


def signed_headers(secret: str, message_id: str, payload: str, now: datetime) -> dict[str, str]:
    """The webhook-id, webhook-timestamp and webhook-signature headers of one attempt."""
    moment = now.astimezone(UTC)  # an aware non-UTC time would sign the wrong timestamp
    signature = Webhook(secret).sign(message_id, moment, payload)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
