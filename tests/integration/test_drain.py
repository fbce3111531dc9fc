"""Graceful drain against real PostgreSQL, Redis and `unclip worker` processes: SIGTERM in the
middle of the decoder ends with the job done and the worker gone within the drain timeout.

Uses the `farm` fixture (tests/integration/conftest.py): a private database and Redis db.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from shared.db.models import Job

pytestmark = pytest.mark.integration

DRAIN_TIMEOUT_S = 2.0
# The stage stops EXIT_RESERVE_S (worker/tasks/drain.py) before the drain timeout, so the
# worker is gone about when it runs out; measured up to 0.9 s past it at load 12.
EXIT_MARGIN_S = 1.0
# How long the wait goes on before the test gives up (a worker that ignores SIGTERM).
GIVE_UP_S = 60.0
LONG = {"prior": 2, "decoder": 250, "upsampler": 2}


def _sigterm_and_wait(proc: Any) -> float:
    """SIGTERM the worker's main process (as `docker compose stop` does); seconds to exit."""
    started = time.monotonic()
    proc.process.send_signal(signal.SIGTERM)
    proc.process.wait(timeout=GIVE_UP_S)
    return time.monotonic() - started


def test_sigterm_mid_decoder_hands_the_job_back_and_exits(farm: Any) -> None:
    draining = farm.worker("draining", UNCLIP_DRAIN_TIMEOUT_S=str(DRAIN_TIMEOUT_S))
    job_id = farm.submit(seed=31, steps=LONG)
    victim = farm.running_decoder(job_id)
    farm.shorten_decoder(job_id)  # what the next decoder attempt reads
    took = _sigterm_and_wait(draining)
    assert took <= DRAIN_TIMEOUT_S + EXIT_MARGIN_S, (
        f"the worker took {took:.2f} s to exit (drain timeout {DRAIN_TIMEOUT_S:g} s)"
    )
    assert draining.process.returncode == 0, draining.log()[-3000:]
    assert "handed back" in draining.log()
    rows = farm.attempts(job_id)
    assert [(s, st) for s, st, _, _ in rows] == [("prior", "succeeded"), ("decoder", "released")]
    assert rows[1][2] == victim and "drain timeout" in rows[1][3]
    with farm.sessions() as session:
        job = session.get_one(Job, job_id)
        assert (job.status, job.worker_id) == ("decoder", None)  # free for the next worker

    farm.worker("restarted")  # no sweeper: the handed-back message alone carries the job
    done = farm.wait_job(job_id)
    assert done["status"] == "succeeded", done
    assert [(s, st) for s, st, _, _ in farm.attempts(job_id)] == [
        ("prior", "succeeded"), ("decoder", "released"), ("decoder", "succeeded"),
        ("upsampler", "succeeded"),
    ]  # fmt: skip


def test_sigterm_lets_a_stage_that_ends_in_time_finish(farm: Any) -> None:
    draining = farm.worker("finishing", UNCLIP_DRAIN_TIMEOUT_S="120")
    job_id = farm.submit(seed=32, steps={"prior": 2, "decoder": 30, "upsampler": 2})
    victim = farm.running_decoder(job_id)
    _sigterm_and_wait(draining)
    assert draining.process.returncode == 0, draining.log()[-3000:]
    rows = farm.attempts(job_id)
    assert rows[1][:3] == ("decoder", "succeeded", victim)  # finished, not handed back
    assert all(st == "succeeded" for _, st, _, _ in rows)
    farm.worker("next")  # the upsampler's message was published before the worker left
    assert farm.wait_job(job_id)["status"] == "succeeded"
