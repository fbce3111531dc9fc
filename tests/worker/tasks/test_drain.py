"""Drain state: the main process's deadline reaches pool processes forked before it was set."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from worker.tasks import drain


@pytest.fixture(autouse=True)
def fresh_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drain, "_state_dir", None)
    monkeypatch.setattr(drain, "_deadline", None)


def _report(queue: multiprocessing.Queue[tuple[bool, bool]], started: object) -> None:
    started.set()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while not drain.draining() and time.monotonic() < deadline:
        time.sleep(0.01)
    queue.put((drain.draining(), drain.overdue()))


def test_a_forked_pool_process_sees_the_drain_begun_after_the_fork() -> None:
    drain.prepare()
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[tuple[bool, bool]] = context.Queue()
    started = context.Event()
    child = context.Process(target=_report, args=(queue, started))
    child.start()
    assert started.wait(20)
    drain.begin(0.0)  # as on SIGTERM with no time left
    assert queue.get(timeout=30) == (True, True)
    child.join(10)


def test_overdue_only_after_the_timeout() -> None:
    drain.prepare()
    assert not drain.draining() and not drain.overdue()
    deadline = drain.begin(30.0)
    assert drain.draining() and not drain.overdue()
    assert drain.overdue(now=deadline + 0.1)
    assert drain.begin(300.0) == deadline  # a second SIGTERM never extends the drain


def test_stages_stop_early_enough_for_the_exit() -> None:
    # The reserve (the hand-back and the process's exit) comes off the stages' time, at most
    # half of it, so the whole worker is gone within the drain timeout.
    assert drain.stage_time(60.0) == 60.0 - drain.EXIT_RESERVE_S
    assert drain.stage_time(1.0) == 0.5
    assert drain.stage_time(0.0) == 0.0  # a cold shutdown: stop at the next step
    drain.prepare()
    before = time.time()
    deadline = drain.begin(10.0)
    assert before + drain.stage_time(10.0) <= deadline <= time.time() + drain.stage_time(10.0)
