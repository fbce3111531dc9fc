"""`unclip submit|watch|jobs|cancel` as a user runs them, against a running embedded stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--size", "64x64", "--steps", "2,2,2"]


def _unclip(stack: Any, *argv: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    server = str(stack.client.base_url).rstrip("/")
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *argv, "--server", server],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_submit_wait_saves_pngs_and_jobs_lists_them(embedded_stack: Any, tmp_path: Path) -> None:
    done = _unclip(embedded_stack, "submit", "a red circle", "-n", "2", "--seed", "5", *SMALL,
                   "--wait", "-o", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    paths = [Path(line) for line in done.stdout.splitlines() if line.endswith(".png")]
    assert len(paths) == 2
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (64, 64)
    job_id = paths[0].name.split("_")[0]
    # Without a terminal the progress is plain lines, ending with the outcome.
    assert f"{job_id}: succeeded" in done.stdout

    listed = _unclip(embedded_stack, "jobs", "--json", "--limit", "50")
    assert listed.returncode == 0, listed.stderr
    assert job_id in [job["id"] for job in json.loads(listed.stdout)["data"]]
    table = _unclip(embedded_stack, "jobs")
    assert table.returncode == 0 and job_id[:8] in table.stdout


def test_submit_json_output_parses(embedded_stack: Any, tmp_path: Path) -> None:
    done = _unclip(embedded_stack, "submit", "a blue square", *SMALL, "--wait", "--json",
                   "-o", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded"
    assert [Path(f).exists() for f in job["files"]] == [True]

    again = _unclip(embedded_stack, "watch", job["id"], "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["id"] == job["id"]


def test_bad_input_exits_non_zero_with_the_servers_message(embedded_stack: Any) -> None:
    bad = _unclip(embedded_stack, "submit", "a red circle", "--size", "77x77")
    assert bad.returncode != 0
    assert "77x77" in bad.stderr and "HTTP 400" in bad.stderr

    missing = _unclip(embedded_stack, "cancel", "no-such-job")
    assert missing.returncode != 0 and "HTTP 404" in missing.stderr


def test_cancel_a_queued_job(embedded_stack: Any) -> None:
    # Many steps, so it is still queued or running when the cancel arrives.
    submitted = _unclip(embedded_stack, "submit", "a green star", "--size", "64x64",
                        "--steps", "50,50,2", "--json")  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    cancelled = _unclip(embedded_stack, "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"{job_id}: cancelled"
