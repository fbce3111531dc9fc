"""Which webhook URLs a job may name: http(s) only, and no private targets unless allowed."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from shared.errors import InvalidInput

MAX_URL_CHARS = 2048
WEBHOOK_EVENTS = ("started", "progress", "completed")


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None


def _addresses(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidInput(f"webhook_url host {host!r} does not resolve ({exc})",
                           param="webhook_url") from exc  # fmt: skip
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """`url` if a job may send deliveries there; InvalidInput naming why not otherwise.

    Without `allow_private`, a host that is or resolves to a loopback, private, link-local,
    multicast or reserved address is refused (the receiver must be on the public internet).
    """
    if len(url) > MAX_URL_CHARS:
        raise InvalidInput(f"webhook_url has {len(url)} characters; at most {MAX_URL_CHARS}",
                           param="webhook_url")  # fmt: skip
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"webhook_url {url!r} must be an absolute http:// or https:// URL",
                           param="webhook_url")  # fmt: skip
    if parts.username or parts.password:
        raise InvalidInput("webhook_url must not carry a user name or password",
                           param="webhook_url")  # fmt: skip
    if allow_private:
        return url
    for address in _addresses(parts.hostname):
        kind = _refused(address)
        if kind is not None:
            raise InvalidInput(
                f"webhook_url host {parts.hostname!r} is a {kind} address ({address}); "
                "webhooks go to public hosts only (UNCLIP_WEBHOOKS__ALLOW_PRIVATE_TARGETS)",
                param="webhook_url",
            )
    return url


def check_webhook_events(events: Sequence[str] | None) -> tuple[str, ...]:
    """The chosen event kinds (default: completed only); InvalidInput for an unknown one."""
    if events is None:
        return ("completed",)
    unknown = [e for e in events if e not in WEBHOOK_EVENTS]
    if unknown or not events:
        raise InvalidInput(
            f"webhook_events {events!r}: choose one or more of {list(WEBHOOK_EVENTS)}",
            param="webhook_events",
        )
    return tuple(dict.fromkeys(events))
