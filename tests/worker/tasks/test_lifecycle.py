"""The worker's exit: atexit handlers and logs, then no interpreter teardown; a pool child
leaving during a drain exits at once. Each case runs in a process of its own."""

from __future__ import annotations

import atexit
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from worker.tasks import drain, lifecycle


@pytest.fixture(autouse=True)
def fresh_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drain, "_state_dir", None)
    monkeypatch.setattr(drain, "_deadline", None)


def _exit_with_atexit(marker: str) -> None:
    atexit.register(Path(marker).write_text, "atexit ran")
    lifecycle.exit_now(3)


def _child_leaving(draining: bool, as_main: bool = False) -> None:
    if draining:
        drain.begin(0.0)
    if as_main:  # the worker's main process: Celery's own shutdown ends it, not this hook
        lifecycle._main_pid = os.getpid()
    lifecycle._child_exit(pid=os.getpid(), exitcode=0)
    lifecycle._child_exit(pid=os.getpid() + 1, exitcode=0)  # another process's: no effect
    os._exit(7)  # reached only when _child_exit did not end the process


def _run(target: Callable[..., object], *args: object, start: str = "fork") -> int | None:
    process = multiprocessing.get_context(start).Process(target=target, args=args)
    process.start()
    process.join(30)
    return process.exitcode


def test_exit_now_runs_atexit_and_keeps_the_code(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    # A fresh interpreter, as the worker's main process is: a fork of pytest would inherit its
    # atexit handlers and locks held by other tests' threads, which can hang the exit.
    assert _run(_exit_with_atexit, str(marker), start="spawn") == 3
    assert marker.read_text() == "atexit ran"


def test_a_child_leaving_during_a_drain_exits_at_once() -> None:
    drain.prepare()
    assert _run(_child_leaving, False) == 7  # not draining: billiard's own exit path goes on
    started = time.monotonic()
    assert _run(_child_leaving, True) == 0
    assert time.monotonic() - started < 5
    assert _run(_child_leaving, True, True) == 7
