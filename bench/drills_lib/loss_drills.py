"""Drills where messages go missing or jobs cannot be done: Redis losing its queue, a publish
cut after a stage commit, a job that fails every attempt, a broken worker beside a good one."""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.drills_lib.drill import DrillContext
from bench.drills_lib.jobs import JobFacts
from bench.drills_lib.processes import ProcessFailed


def _status(facts: list[JobFacts], job_id: str) -> str:
    return next((f.status for f in facts if f.id == job_id), "missing")


def _all_succeeded(ids: list[str]) -> Callable[[list[JobFacts]], bool]:
    return lambda facts: all(_status(facts, i) == "succeeded" for i in ids)


def redis_flush(ctx: DrillContext) -> None:
    """10 jobs, one worker; FLUSHDB on the stack's own Redis index drops every queued message."""
    ctx.ensure_workers("w1")
    ids = ctx.submit(10)
    time.sleep(0.5)
    assert ctx.s.redis is not None
    dropped = ctx.s.redis.flush()
    ctx.damage()
    ctx.note(f"FLUSHDB dropped {dropped} keys")
    ctx.check("there were messages to lose", dropped > 0)
    ctx.after(f"all {len(ids)} succeeded", _all_succeeded(ids))


def publish_cut(ctx: DrillContext) -> None:
    """The prior commits, then its publish of the decoder message is cut at the TCP proxy
    (every try for 3 s); the job must still finish."""
    ctx.ensure_workers("w1")
    job_id = ctx.submit_one(steps={"prior": 60, "decoder": 2, "upsampler": 2})
    rule = ctx.s.redis_proxy.cut_when(f"{job_id}.decoder.".encode(), for_s=3.0)
    deadline = time.monotonic() + 60
    while not rule.hits and time.monotonic() < deadline:
        time.sleep(0.05)
    ctx.damage()
    ctx.check("the decoder message's publish was cut", bool(rule.hits))
    time.sleep(3.5)
    ctx.note(f"cut {len(rule.hits)} publish tries")
    ctx.after("the job succeeded", _all_succeeded([job_id]))


def poison_storage(ctx: DrillContext) -> None:
    """A job whose decoder fails with a (transient) storage error on every attempt, beside 6
    healthy jobs: it must fail after max_attempts decoder attempts, the others succeed."""
    ctx.ensure_workers("w1")
    poison = ctx.submit_one(steps={"prior": 40, "decoder": 2, "upsampler": 2})
    job_dir = ctx.s.data_dir / "storage" / "jobs" / poison
    job_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(2, 16):  # a file where each later attempt's folder would go
        (job_dir / f"attempt-{attempt}").write_bytes(b"")
    healthy = ctx.submit(6)
    limit = ctx.s.config.max_attempts

    def poison_failed_in_budget(facts: list[JobFacts]) -> bool:
        fact = next((f for f in facts if f.id == poison), None)
        if fact is None or fact.status != "failed":
            return False
        decoders = sum(stage == "decoder" for stage, _, _, _ in fact.attempts)
        ctx.note(f"poison: {decoders} decoder attempts, error {fact.error_code}")
        return decoders <= limit

    ctx.after(f"poison failed after <= {limit} decoder attempts", poison_failed_in_budget)
    ctx.after("the 6 healthy jobs succeeded", _all_succeeded(healthy))


def broken_worker(ctx: DrillContext) -> None:
    """A worker whose family cannot load starts first, then a healthy one; 10 jobs must all
    succeed (the broken worker must not grab and fail them)."""
    broken = ctx.s.work_dir / "broken-family"
    broken.mkdir(exist_ok=True)
    (broken / "family.json").write_text("{ this is not a model family")
    bad = ctx.s.start_worker("bad", family=broken, wait=False)
    ctx.ensure_workers("good")
    try:
        bad.wait_for_log(" ready.", timeout_s=60)
    except ProcessFailed as exc:
        ctx.note(f"the broken worker did not get ready: {str(exc).splitlines()[0][:120]}")
    ids = ctx.submit(10)
    ctx.after("all 10 succeeded", _all_succeeded(ids))
