"""`unclip up` stops its children on SIGTERM and reports a clean stop as 0."""

from __future__ import annotations

import subprocess
import sys

from api.commands.up import stop_children


def _child(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_stop_terminates_children_cleanly() -> None:
    children = [_child("import time; time.sleep(60)") for _ in range(2)]
    assert stop_children(children) == 0
    assert all(c.returncode is not None for c in children)


def test_a_child_that_failed_makes_the_stop_unclean() -> None:
    failed = _child("raise SystemExit(3)")
    failed.wait()
    assert stop_children([failed, _child("import time; time.sleep(60)")]) == 1
