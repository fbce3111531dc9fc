"""Webhook targets: http(s) only; private, loopback and link-local hosts refused unless allowed."""

from __future__ import annotations

import pytest

from shared.errors import InvalidInput
from shared.webhooks.schedule import RETRY_DELAYS_S, retry_delay_s
from shared.webhooks.targets import check_webhook_events, check_webhook_url


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


def test_public_address_is_accepted() -> None:
    assert check_webhook_url("https://93.184.215.14/hook", allow_private=False)


def test_events_and_schedule() -> None:
    assert check_webhook_events(None) == ("completed",)
    assert check_webhook_events(["progress", "started", "progress"]) == ("progress", "started")
    with pytest.raises(InvalidInput, match="'finished'"):
        check_webhook_events(["finished"])
    assert retry_delay_s(1) == 5 and retry_delay_s(2) == 300
    assert retry_delay_s(len(RETRY_DELAYS_S) + 1) is None
    assert sum(RETRY_DELAYS_S) >= 24 * 3600  # retries span at least a day
