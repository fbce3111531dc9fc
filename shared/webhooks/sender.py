"""One attempt of one delivery: its body, its signature, a checked address, the POST.

Where private targets are refused (production), the URL's host is resolved at every attempt,
the attempt is refused for good if any address is private, loopback, link-local or otherwise
not public, and the connection goes to the address just checked (DNS rebinding cannot move
it): the Host header, TLS SNI and certificate check still name the URL's host.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from shared.db.base import utcnow
from shared.db.models.webhook_delivery import WebhookDelivery
from shared.db.webhooks import AttemptOutcome
from shared.settings import Settings
from shared.webhooks.signing import signed_headers, webhook_secret
from shared.webhooks.targets import (
    IPAddress,
    private_targets_allowed,
    refusal,
    resolve_host,
)

ImageUrl = Callable[[str, int], str]
Resolve = Callable[[str], list[IPAddress]]


class RefusedTarget(Exception):
    """The delivery's host has an address webhooks may not go to; trying again cannot help."""


def make_client(settings: Settings) -> httpx.Client:
    """The dispatcher's HTTP client: the receiver's timeout, no redirects, no proxies from the
    environment (the checked address is the one connected to), no connection kept between
    attempts (so none made for one name is reused for another name at the same address)."""
    return httpx.Client(
        timeout=settings.webhooks.timeout_s, follow_redirects=False, trust_env=False,
        limits=httpx.Limits(max_keepalive_connections=0),
    )  # fmt: skip


def post_pinned(
    http: httpx.Client, url: httpx.URL, address: IPAddress, body: str, headers: dict[str, str]
) -> httpx.Response:
    """POST `body` to `url` over a connection to `address`; the Host header, TLS SNI and the
    certificate check name the URL's host (httpx's `sni_hostname` request extension)."""
    host = url.raw_host.decode("ascii")
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return http.post(
        url.copy_with(host=str(address)), content=body, follow_redirects=False,
        headers={**headers, "host": url.netloc.decode("ascii")}, extensions=extensions,
    )  # fmt: skip


class Sender:
    """Makes single delivery attempts; safe to use from several threads at once."""

    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.Client | None = None,
        image_url: ImageUrl | None = None,
        resolve: Resolve = resolve_host,
    ) -> None:
        self.settings = settings
        self.http = http or make_client(settings)
        self.image_url = image_url
        self.resolve = resolve
        self.allow_private = private_targets_allowed(settings)

    def body(self, delivery: WebhookDelivery) -> str:
        """The JSON sent: the stored event, with fresh signed URLs for finished images."""
        payload: dict[str, Any] = dict(delivery.payload)
        data = dict(payload.get("data") or {})
        if self.image_url is not None and "image_indices" in data:
            data["images"] = [self.image_url(delivery.job_id, i) for i in data["image_indices"]]
        payload["data"] = data
        payload["timestamp"] = utcnow().isoformat()
        return json.dumps(payload, separators=(",", ":"), default=str)

    def attempt(self, delivery: WebhookDelivery) -> AttemptOutcome:
        """Try the delivery once; what the receiver answered, or why there was no answer."""
        body = self.body(delivery)
        secret = webhook_secret(self.settings.api_key_secret.get_secret_value(), delivery.scope)
        started, clock = utcnow(), time.monotonic()
        headers = signed_headers(secret, delivery.id, body, started)
        status, error, final = None, None, False
        try:
            status = self.post(delivery.url, body, headers).status_code
        except (RefusedTarget, httpx.InvalidURL) as exc:
            error, final = f"{type(exc).__name__}: {exc}", True
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        elapsed_ms = int((time.monotonic() - clock) * 1000)
        return AttemptOutcome(status, error, started, elapsed_ms, final=final)

    def post(self, url: str, body: str, headers: dict[str, str]) -> httpx.Response:
        """POST to `url`; unless private targets are allowed, only to an address checked now,
        trying the next checked address when one refuses the connection."""
        target = httpx.URL(url)
        if self.allow_private:
            return self.http.post(target, content=body, headers=headers, follow_redirects=False)
        host = target.raw_host.decode("ascii")
        try:
            addresses = self.resolve(host)
        except OSError as exc:  # perhaps for a moment: an ordinary failed attempt
            raise httpx.ConnectError(f"webhook_url host {host!r} does not resolve ({exc})") from exc
        reason = refusal(host, addresses)
        if reason is not None:
            raise RefusedTarget(reason)
        failure = httpx.ConnectError(f"webhook_url host {host!r} has no address")
        for address in addresses:
            try:
                return post_pinned(self.http, target, address, body, headers)
            except httpx.ConnectError as exc:
                failure = exc
        raise failure
