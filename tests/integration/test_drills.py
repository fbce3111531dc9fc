"""The short form of the failure drills (bench/drills.py): real PostgreSQL, Redis and workers.

One stack for the module: a private database and Redis db index behind the drill proxies,
`unclip api`, two `unclip worker` processes on the tiny reference family, and
`unclip sweeper` where the tree has it. Each drill must end with every job terminal, none
duplicated, and its own checks met (e.g. the poison job failed, the healthy ones succeeded).
The long form, with every drill on a stack of its own, is `python -m bench.drills`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.drills_lib.drill import run_in
from bench.drills_lib.registry import BY_NAME
from bench.drills_lib.resources import ResourceError
from bench.drills_lib.stack import Stack, StackConfig, sweeper_available

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEADLINE_S = 90.0  # generous for a shared 2-core machine; a quiet one needs ~10 s per drill


@pytest.fixture(scope="module")
def drill_stack() -> Iterator[Stack]:
    try:
        stack = Stack("test", StackConfig())
        stack.open()
    except ResourceError as exc:
        stack.close()
        if os.environ.get("UNCLIP_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        stack.start_worker("w1", wait=False)
        stack.start_worker("w2")
        stack.worker_named("w1").wait_for_log(" ready.")
        yield stack
    finally:
        stack.close()


def _run(stack: Stack, name: str, expected_jobs: int) -> None:
    result = run_in(stack, BY_NAME[name], deadline_s=DEADLINE_S)
    summary = f"{result}"
    assert result.error is None, summary
    assert result.submitted == expected_jobs, summary
    assert result.lost == 0, summary  # every job terminal by the deadline
    assert result.duplicated == 0, summary  # no stage completed twice, no extra images
    assert result.failed_checks() == [], summary


def test_killed_pool_process_mid_decoder(drill_stack: Stack) -> None:
    """kill -9 of the pool child running a decoder: the job resumes there and succeeds."""
    _run(drill_stack, "pool-kill", expected_jobs=4)


def test_poison_job_fails_within_its_budget(drill_stack: Stack) -> None:
    """A decoder that fails every attempt: the job fails after max_attempts, 6 others succeed."""
    _run(drill_stack, "poison-storage", expected_jobs=7)


@pytest.mark.skipif(not sweeper_available(), reason="`unclip sweeper` is not in this tree yet")
def test_redis_flushdb_loses_no_job(drill_stack: Stack) -> None:
    """FLUSHDB on the broker's db with 10 jobs queued: the sweeper re-publishes them all."""
    _run(drill_stack, "redis-flush", expected_jobs=10)
