"""Graceful drain: on SIGTERM the worker is gone about when drain_timeout_s runs out.

A running stage may go on for stage_time(drain_timeout_s): the drain timeout less
EXIT_RESERVE_S, the time the hand-back and the process's own exit take. Past that it stops at
its next step boundary and hands its job back (worker/tasks/base.py), and the worker exits
(worker/tasks/lifecycle.py).

The worker's main process calls prepare() before its pool forks, and begin() from Celery's
worker_shutting_down signal. begin() writes the stages' deadline to a file that every pool
process (forked with the same path) reads at its next sampling step: a file, because the
signal reaches only the main process and the pool processes share nothing else with it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from pathlib import Path

DEADLINE_FILE = "drain-deadline"
# What a drained worker needs after its stage stopped: the pool child's exit, Celery's pool
# join (it waits out a 0.5 s timer sleep) and consumer close, the process's exit. Measured at
# 1.0-1.7 s on the 2-core machine at load 9-13 (docs/benchmarks.md, "Graceful drain"), so the
# worker leaves up to ~1 s past the timeout there. At most half the timeout is reserved.
EXIT_RESERVE_S = 1.0

_state_dir: Path | None = None
_deadline: float | None = None


def prepare() -> Path:
    """Create this worker's drain folder (main process, before the pool forks)."""
    global _state_dir, _deadline
    if _state_dir is None:
        _state_dir = Path(tempfile.mkdtemp(prefix="unclip-drain-"))
        atexit.register(shutil.rmtree, _state_dir, True)
    _deadline = None
    return _state_dir


def stage_time(timeout_s: float) -> float:
    """How long running stages may go on in a drain of `timeout_s` seconds."""
    return max(0.0, timeout_s - min(EXIT_RESERVE_S, timeout_s / 2))


def begin(timeout_s: float) -> float:
    """Start a drain of `timeout_s` seconds: running stages may go on for stage_time(timeout_s);
    their deadline (epoch s)."""
    global _deadline
    deadline = time.time() + stage_time(timeout_s)
    if _deadline is not None and _deadline <= deadline:
        return _deadline  # a second signal never extends the drain
    _deadline = deadline
    if _state_dir is not None:
        path = _state_dir / DEADLINE_FILE
        partial = path.with_suffix(".partial")
        partial.write_text(repr(deadline))
        partial.replace(path)  # atomic: a reader sees the whole number or no file
    return deadline


def deadline() -> float | None:
    """The drain deadline, once draining has begun (read from the main process's file)."""
    global _deadline
    if _deadline is None and _state_dir is not None:
        try:
            _deadline = float((_state_dir / DEADLINE_FILE).read_text())
        except (OSError, ValueError):
            return None
    return _deadline


def draining() -> bool:
    """Whether this worker is shutting down (no new stage should start)."""
    return deadline() is not None


def overdue(now: float | None = None) -> bool:
    """Whether a running stage must stop now and hand its job back."""
    limit = deadline()
    return limit is not None and (time.time() if now is None else now) >= limit
