"""Reconnect: growing pauses, one notice per outage, the error back once it lasted too long."""

from __future__ import annotations

import pytest

from shared.client.api_client import ApiError
from shared.client.reconnect import Reconnect


def _reconnect(notices: list[str], sleeps: list[float], now: list[float]) -> Reconnect:
    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    return Reconnect(give_up_after_s=20.0, notify=notices.append, sleep=sleep,
                     clock=lambda: now[0])  # fmt: skip


def test_backs_off_then_gives_up_with_the_error() -> None:
    notices, sleeps, now = list[str](), list[float](), [0.0]
    retry = _reconnect(notices, sleeps, now)
    refused = ApiError("cannot reach http://127.0.0.1:8000: Connection refused")
    with pytest.raises(ApiError, match=r"Connection refused; gave up after 22 s") as caught:
        for _ in range(100):
            retry.wait(refused)
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert notices == ["cannot reach http://127.0.0.1:8000: Connection refused (no answer); "
                       "reconnecting (for up to 20 s)"]  # fmt: skip
    assert caught.value.status is None


def test_an_answer_ends_the_outage() -> None:
    notices, sleeps, now = list[str](), list[float](), [0.0]
    retry = _reconnect(notices, sleeps, now)
    for status in (502, 503, 504):
        retry.wait(ApiError("bad gateway", status=status))
    retry.recovered()
    retry.wait(ApiError("reset"))
    assert sleeps == [0.5, 1.0, 2.0, 0.5]
    assert len(notices) == 2  # one per outage


@pytest.mark.parametrize("status", [400, 401, 404, 409, 500])
def test_an_error_that_will_not_pass_is_raised_at_once(status: int) -> None:
    notices, sleeps, now = list[str](), list[float](), [0.0]
    error = ApiError("no", status=status)
    with pytest.raises(ApiError) as caught:
        _reconnect(notices, sleeps, now).wait(error)
    assert caught.value is error and sleeps == [] and notices == []
