"""Pool processes sharing a device take turns on it: one model-library call at a time."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from shared.db.states import Stage
from worker.tasks import batching
from worker.tasks.device_turns import device_turn, turn_file
from worker.unclip.render_spec import RenderSpec

DEVICE = "cpu-test-turns"  # a device name of the tests' own, so no worker's lock is touched


@pytest.fixture(autouse=True)
def _clean_lock() -> Iterator[None]:
    yield
    turn_file(DEVICE).unlink(missing_ok=True)


def _hold(device: str, held: Any, release: Any) -> None:
    with device_turn(device, True):
        held.set()
        release.wait(30)


def _waits_then_gets(device: str) -> tuple[threading.Thread, threading.Event]:
    got = threading.Event()

    def take() -> None:
        with device_turn(device, True):
            got.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    return thread, got


def test_a_process_waits_while_another_holds_the_turn_and_gets_it_after() -> None:
    ctx = multiprocessing.get_context("fork")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(DEVICE, held, release))
    holder.start()
    try:
        assert held.wait(30)
        thread, got = _waits_then_gets(DEVICE)
        assert not got.wait(0.5)  # still the other process's turn
        release.set()
        assert got.wait(30)
        thread.join(5)
    finally:
        release.set()
        holder.join(30)


def test_a_killed_holder_leaves_the_device_free() -> None:
    ctx = multiprocessing.get_context("fork")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(DEVICE, held, release))
    holder.start()
    assert held.wait(30)
    thread, got = _waits_then_gets(DEVICE)
    assert not got.wait(0.3)
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGKILL)  # the kernel drops its lock with its files
    holder.join(30)
    assert got.wait(30)
    thread.join(5)


def test_without_turns_no_lock_is_taken() -> None:
    with device_turn(DEVICE, False):
        thread, got = _waits_then_gets(DEVICE)
        assert got.wait(30)  # nobody holds the device: the other gets it at once
        thread.join(5)
    assert got.is_set()


def _overlap_of_two_calls(monkeypatch: pytest.MonkeyPatch, turns: bool) -> int:
    """The most library calls running at once when two threads render unbatched jobs."""
    running, most = 0, 0
    lock = threading.Lock()

    def call(family: Any, specs: Any, inputs: Any, progress: Any) -> list[torch.Tensor]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.3)
        with lock:
            running -= 1
        return [torch.zeros(1) for _ in specs]

    monkeypatch.setitem(batching.STAGE_CALLS, Stage.decoder, call)
    family = SimpleNamespace(device=DEVICE)
    spec = RenderSpec(kind="generate", prompt="p", n=1, seed=1)

    def render() -> None:
        batching.run_in_batch(Stage.decoder, family, spec, None, _no_progress,  # type: ignore[arg-type]
                              turns=turns)  # fmt: skip

    threads = [threading.Thread(target=render) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return most


def _no_progress(step: Any) -> None:
    return None


@pytest.mark.parametrize(("turns", "expected"), [(True, 1), (False, 2)])
def test_model_calls_take_turns_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, turns: bool, expected: int
) -> None:
    assert _overlap_of_two_calls(monkeypatch, turns) == expected


def test_the_turn_file_is_per_device_and_user() -> None:
    names = {turn_file(d).name for d in ("cpu", "cuda:0", "cuda:1")}
    assert len(names) == 3 and all(str(os.getuid()) in n for n in names)
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyz0123456789-_.") for n in names)

