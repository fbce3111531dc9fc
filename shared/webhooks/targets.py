"""Which webhook URLs a job may name, and which addresses its deliveries may reach.

http(s) only, and public hosts only unless private targets are allowed. The URL is checked at
submission; the dispatcher checks the addresses again at every send (shared/webhooks/sender.py),
since what a name resolves to can change in the day a delivery may be retried for.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from shared.errors import InvalidInput
from shared.settings import Settings

MAX_URL_CHARS = 2048
WEBHOOK_EVENTS = ("started", "progress", "completed")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ADDRESS_KINDS = ("loopback", "link_local", "private", "multicast", "reserved", "unspecified")
# RFC 6598 shared address space (carrier-grade NAT): neither private to Python nor public.
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
# RFC 6052 well-known NAT64 prefix: the last 32 bits are the IPv4 address it reaches.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")


def private_targets_allowed(settings: Settings) -> bool:
    """UNCLIP_WEBHOOKS__ALLOW_PRIVATE_TARGETS; unset, private targets are allowed outside
    production only. Submission and the dispatcher both decide with this."""
    allow = settings.webhooks.allow_private_targets
    return settings.env != "production" if allow is None else allow


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to (IPv4-mapped, 6to4, well-known NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def _refused(address: IPAddress) -> str | None:
    """What kind of non-public address `address` is; None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = embedded_ipv4(address)
        if carried is not None:  # judged by where it leads, not by its IPv6 prefix
            return _refused(carried)
    for kind in ADDRESS_KINDS:
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if address in SHARED_ADDRESS_SPACE:
        return "shared (carrier-grade NAT)"
    return None


def resolve_host(host: str) -> list[IPAddress]:
    """The addresses of `host` (a name or an IP literal), in the resolver's order.

    Raises OSError when the name does not resolve.
    """
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def refusal(host: str, addresses: Iterable[IPAddress]) -> str | None:
    """Why deliveries may not go to `host` at `addresses` (any one refused); None if they may."""
    for address in addresses:
        kind = _refused(address)
        if kind is not None:
            carried = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
            shown = f"{address}, which leads to {carried}" if carried else str(address)
            return (
                f"webhook_url host {host!r} has a {kind} address ({shown}); "
                "webhooks go to public hosts only (UNCLIP_WEBHOOKS__ALLOW_PRIVATE_TARGETS)"
            )
    return None


def target_of(url: str) -> str:
    """The receiver a webhook URL names, for per-receiver limits: its host and port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """`url` if a job may send deliveries there; InvalidInput naming why not otherwise.

    Without `allow_private`, a host that is or resolves to a loopback, private, link-local,
    multicast, reserved or shared (CGNAT) address is refused, as is an IPv6 address that
    carries such an IPv4 one (the receiver must be on the public internet).
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
    try:
        addresses = resolve_host(parts.hostname)
    except OSError as exc:
        raise InvalidInput(f"webhook_url host {parts.hostname!r} does not resolve ({exc})",
                           param="webhook_url") from exc  # fmt: skip
    reason = refusal(parts.hostname, addresses)
    if reason is not None:
        raise InvalidInput(reason, param="webhook_url")
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
