"""Webhook targets: http(s) only; private, loopback and link-local hosts refused unless allowed."""

from __future__ import annotations

import pytest

from shared.errors import InvalidInput
from shared.settings import Settings, Webhooks
from shared.webhooks.schedule import RETRY_DELAYS_S, retry_delay_s
from shared.webhooks.targets import (
    check_webhook_events,
    check_webhook_url,
    private_targets_allowed,
    target_of,
)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "http://localhost:8080/x", "http://10.1.2.3/", "http://[::1]/",
    "http://169.254.169.254/latest/meta-data", "http://192.168.0.5/", "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/",
])  # fmt: skip
def test_private_targets_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(InvalidInput, match="public hosts only") as caught:
        check_webhook_url(url, allow_private=False)
    assert caught.value.param == "webhook_url"
    assert check_webhook_url(url, allow_private=True) == url


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/hook", "http://u:p@x.io/"])
def test_malformed_targets_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="webhook_url"):
        check_webhook_url(url, allow_private=True)


@pytest.mark.parametrize(("url", "kind"), [
    ("http://100.64.0.1/", "shared (carrier-grade NAT)"),
    ("http://100.127.255.254/", "shared (carrier-grade NAT)"),
    ("http://[2002:7f00:1::]/", "loopback"),              # 6to4 carrying 127.0.0.1
    ("http://[2002:a00:1::5]/", "private"),               # 6to4 carrying 10.0.0.1
    ("http://[::ffff:10.1.2.3]/", "private"),             # IPv4-mapped
    ("http://[::ffff:100.64.0.9]/", "shared (carrier-grade NAT)"),
    ("http://[64:ff9b::7f00:1]/", "loopback"),            # NAT64 carrying 127.0.0.1
    ("http://[64:ff9b::a9fe:a9fe]/", "link-local"),       # NAT64 carrying 169.254.169.254
    ("http://[64:ff9b::c0a8:1]/", "private"),             # NAT64 carrying 192.168.0.1
])  # fmt: skip
def test_cgnat_and_ipv6_forms_of_refused_ipv4_are_refused(url: str, kind: str) -> None:
    with pytest.raises(InvalidInput, match="public hosts only") as caught:
        check_webhook_url(url, allow_private=False)
    assert f"has a {kind} address" in caught.value.message


@pytest.mark.parametrize("url", [
    "https://93.184.215.14/hook", "http://[2002:5db8:d70e::1]/",  # 6to4 of a public address
    "http://[64:ff9b::5db8:d70e]/", "http://[::ffff:93.184.215.14]/",  # NAT64, mapped
    "http://100.63.255.255/", "http://100.128.0.1/",  # just outside 100.64.0.0/10
])  # fmt: skip
def test_public_addresses_are_accepted(url: str) -> None:
    assert check_webhook_url(url, allow_private=False) == url


def test_private_targets_are_allowed_outside_production_unless_set(
    sqlite_settings: Settings,
) -> None:
    production = sqlite_settings.model_copy(update={"env": "production"})
    assert private_targets_allowed(sqlite_settings) is True
    assert private_targets_allowed(production) is False
    for settings, allow in ((production, True), (sqlite_settings, False)):
        chosen = settings.model_copy(update={"webhooks": Webhooks(allow_private_targets=allow)})
        assert private_targets_allowed(chosen) is allow


def test_a_receiver_is_its_host_and_port() -> None:
    assert target_of("https://Hooks.Example/a") == target_of("https://hooks.example:443/b")
    assert target_of("http://hooks.example/a") == "hooks.example:80"
    assert target_of("http://[::1]:8080/a") == "::1:8080"


def test_events_and_schedule() -> None:
    assert check_webhook_events(None) == ("completed",)
    assert check_webhook_events(["progress", "started", "progress"]) == ("progress", "started")
    with pytest.raises(InvalidInput, match="'finished'"):
        check_webhook_events(["finished"])
    assert retry_delay_s(1) == 5 and retry_delay_s(2) == 300
    assert retry_delay_s(len(RETRY_DELAYS_S) + 1) is None
    assert sum(RETRY_DELAYS_S) >= 24 * 3600  # retries span at least a day
