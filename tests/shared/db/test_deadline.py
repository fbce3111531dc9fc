"""connect_within: a connect that takes longer than its deadline fails at the deadline, and the
connection it makes later is closed, never handed out. deadline: a call still running at its
deadline has its socket shut down by the process's one watchdog thread, a call that ended in
time never does."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from shared.db.deadline import _WATCHDOG, connect_within, deadline


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


class _Conn:
    """A stand-in DB-API connection: just the socket's file descriptor."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()


def _cut_within(seconds: float) -> float:
    """How long a blocked read ran under deadline(seconds) before its socket was cut."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        started = time.monotonic()
        with deadline(_Conn(ours), seconds):
            assert ours.recv(1) == b""  # shut down under the read: it ends, empty
        return time.monotonic() - started


def test_a_call_still_running_at_its_deadline_gets_its_socket_cut() -> None:
    assert 0.1 <= _cut_within(0.15) < 1.0


def test_a_call_that_ended_in_time_is_never_cut() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with deadline(_Conn(ours), 0.05):
            pass
        time.sleep(0.2)
        ours.sendall(b"x")
        assert theirs.recv(1) == b"x"


def test_deadlines_share_one_thread_and_leave_nothing_armed() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with deadline(_Conn(ours), 5.0):  # the watchdog thread exists from here
            pass
        threads = threading.active_count()
        for _ in range(200):
            with deadline(_Conn(ours), 5.0):
                pass
        assert threading.active_count() == threads
        assert _WATCHDOG.armed() == 0


def test_a_short_deadline_armed_after_long_ones_still_fires_on_time() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs, deadline(_Conn(ours), 30.0):
        assert _cut_within(0.1) < 1.0


def test_a_forked_child_gets_a_watchdog_of_its_own() -> None:
    with deadline(_Conn(socket.socket()), 5.0):  # the parent's thread is running
        pid = os.fork()
        if pid == 0:  # the child: the parent's thread does not exist here
            code = 1
            try:
                code = 0 if _cut_within(0.1) < 1.0 else 1
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
