"""`unclip submit --wait` and `unclip watch` following real jobs: the queue standing while a job
waits, and an exit status that tells whether the job succeeded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_client_commands import REPO, SMALL, _unclip

pytestmark = pytest.mark.integration


def _submit(stack: Any, *argv: str) -> str:
    done = _unclip(stack, "submit", *argv, "--json")
    assert done.returncode == 0, done.stderr
    job_id: str = json.loads(done.stdout)["id"]
    return job_id


def test_a_waiting_job_shows_its_position_and_a_cancelled_one_exits_1(
    embedded_stack: Any, tmp_path: Path
) -> None:
    # Jobs that keep the one embedded worker busy (~7 s each) until the test cancels them.
    blockers = [_submit(embedded_stack, f"a slow one {i}", "-n", "4", "--size", "64x64",
                        "--steps", "100,100,2") for i in range(3)]  # fmt: skip
    server = str(embedded_stack.client.base_url).rstrip("/")
    follower = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "submit", "an orange star", *SMALL, "--wait",
         "-o", str(tmp_path), "--server", server],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(3)  # the follower waits behind the blockers, its position polled meanwhile
        for blocker in reversed(blockers):  # the last ones are still queued: they cancel
            _unclip(embedded_stack, "cancel", blocker)
        stdout, stderr = follower.communicate(timeout=240)
    finally:
        follower.kill()
    assert follower.returncode == 0, stderr
    lines = stdout.splitlines()
    queued = [line for line in lines if ": queued" in line]
    assert queued, stdout
    # Every queued line has the standing: the server's `queued` event (no position) no
    # longer replaces the polled one.
    assert all(", position " in line and ", ETA " in line for line in queued), stdout
    assert lines[-2].endswith(": succeeded") and lines[-1].endswith(".png")

    blocker = blockers[-1]
    watched = _unclip(embedded_stack, "watch", blocker)
    assert watched.returncode == 1
    assert watched.stdout.splitlines()[-1] == f"{blocker}: cancelled"
    as_json = _unclip(embedded_stack, "watch", blocker, "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["status"] == "cancelled"


def test_jobs_piped_lists_whole_ids(embedded_stack: Any) -> None:
    job_id = _submit(embedded_stack, "a listed square", *SMALL)
    listed = _unclip(embedded_stack, "jobs", "--limit", "50")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0][:2] == ["ID", "STATUS"]
    assert job_id in [row[0] for row in rows[1:]]
