"""connect_within: a connect that takes longer than its deadline fails at the deadline, and the
connection it makes later is closed, never handed out."""

from __future__ import annotations

import threading
import time

import pytest

from shared.db.deadline import connect_within


class Late(Exception):
    """The driver's error type for the test."""


def test_a_quick_connect_returns_its_connection() -> None:
    assert connect_within(lambda: "conn", 1.0, close=lambda c: None, timeout_error=Late) == "conn"


def test_a_slow_connect_fails_at_the_deadline_and_is_closed_when_it_arrives() -> None:
    release = threading.Event()
    closed: list[str] = []

    def slow() -> str:
        release.wait(5)
        return "late-conn"

    started = time.monotonic()
    with pytest.raises(Late, match="no connection within 0.2 s"):
        connect_within(slow, 0.2, close=closed.append, timeout_error=Late)
    assert time.monotonic() - started < 1.0
    release.set()
    deadline = time.monotonic() + 5
    while not closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closed == ["late-conn"]


def test_a_failed_connect_raises_its_own_error() -> None:
    def refused() -> str:
        raise ConnectionRefusedError("refused")

    with pytest.raises(ConnectionRefusedError):
        connect_within(refused, 1.0, close=lambda c: None, timeout_error=Late)
