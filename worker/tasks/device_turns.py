"""Pool processes that share one device take turns on it (UNCLIP_PIPELINE > 1).

A stage task spends part of its time off the model: it claims its job, runs the moderation
checks, reads and writes storage, completes the stage and hands the job on, a third of a
small render on a CPU worker (docs/benchmarks.md "Service images/s"). With one pool process
the device waits meanwhile. With settings.pipeline = N a worker runs N pool processes
(`unclip worker --concurrency` defaults to it) and each stage's model-library call holds its
device's turn, so the model still runs one stage at a time on the device while the other
processes do the rest of their tasks beside it.

The turn is an exclusive `flock` on a file per device in the system's temporary folder (so
it is host-local, and the pool processes of every worker on the host that use the device
share it). The kernel drops the lock when its holder's file is closed or its process dies,
so a killed pool child cannot leave the device locked. Each acquisition opens its own file
description, so threads of one process take turns as well.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


def turn_file(device: torch.device | str) -> Path:
    """The lock file of `device` (e.g. cpu, cuda:0) for this user on this host."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", str(device))
    return Path(tempfile.gettempdir()) / f"unclip-device-{os.getuid()}-{name}.lock"


@contextmanager
def device_turn(device: torch.device | str, enabled: bool) -> Iterator[None]:
    """Hold `device`'s turn for the block (nothing when not `enabled`)."""
    if not enabled:
        yield
        return
    fd = os.open(turn_file(device), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
