"""The worker's life-cycle hooks: drain on SIGTERM, a handle on the consumer for health, and
an exit that does not outlast the drain.

install(app, settings) runs in the worker's main process before the pool forks.

Where a drained worker's time went before exit_now() and the pool-child hook (measured with
faulthandler stack dumps, docs/benchmarks.md): after the last stage handed back, each prefork
child sleeps 1 s in billiard's exit path (the main process, no longer running its event loop,
never reads the child's death notice that would cut the sleep short), and the main process,
once Celery had stopped, spent 6-7 s in the interpreter's own teardown (garbage-collecting the
torch-sized heap, 2-core machine at load 9). Both are skipped: nothing is left to do by then.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from celery import Celery, bootsteps
from celery.apps.worker import safe_say
from celery.signals import worker_process_shutdown, worker_shutting_down

from shared.settings import Settings
from worker.tasks import drain
from worker.tasks.request import set_consumer


class ConsumerHandle(bootsteps.StartStopStep):  # type: ignore[misc]
    """Keeps the worker's consumer, so an unhealthy worker can cancel its queues."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, parent: Any) -> None:
        set_consumer(parent)

    def stop(self, parent: Any) -> None:
        set_consumer(None)


def install(app: Celery, settings: Settings) -> None:
    """Wire drain and health into `app` (call once, in the worker's main process)."""
    global _main_pid
    _main_pid = os.getpid()
    drain.prepare()
    app.steps["consumer"].add(ConsumerHandle)

    def on_shutting_down(sig: str = "", how: str = "", **_: Any) -> None:
        # Warm (SIGTERM): running stages get the drain timeout. Cold: they stop at once.
        timeout = settings.drain_timeout_s if how == "Warm" else 0.0
        drain.begin(timeout)
        # Inside a signal handler logging may deadlock; Celery writes such lines with safe_say.
        safe_say(
            f"worker: draining at {datetime.now(UTC).isoformat()}: running stages may go on for "
            f"{drain.stage_time(timeout):g} s, then hand their jobs back; the worker exits about "
            f"when {timeout:g} s (UNCLIP_DRAIN_TIMEOUT_S) run out",
            sys.__stderr__,
        )

    worker_shutting_down.connect(on_shutting_down, weak=False, dispatch_uid="unclip-drain")
    # Connected after every other receiver (the fleet registry's and the metrics' were
    # connected before this install), so their clean-up has run when this one exits.
    worker_process_shutdown.connect(_child_exit, weak=False, dispatch_uid="unclip-child-exit")


# The worker's main process: only Celery's own shutdown ends it (exit_now), never a hook.
_main_pid: int | None = None


def _flush() -> None:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()


def _child_exit(pid: int | None = None, exitcode: int | None = None, **_: Any) -> None:
    """A pool child leaving while the worker drains exits now, not after billiard's 1 s sleep.

    Its stage has ended (handed back or done) and its result is sent by then: the child
    leaves its loop only after the pool's close, between tasks.
    """
    if pid == os.getpid() != _main_pid and drain.draining():
        _flush()
        os._exit(exitcode or 0)


def exit_now(code: int) -> None:
    """End the worker's main process once Celery has stopped: atexit handlers, logs flushed,
    then no interpreter teardown (seconds of garbage collection with torch loaded)."""
    try:
        atexit._run_exitfuncs()
    finally:
        _flush()
        os._exit(code)
