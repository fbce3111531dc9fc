"""Drills that kill or stop worker processes mid-stage: pool child, main process, whole worker,
repeated kills under load, SIGTERM, and a job that kills every process that runs it."""

from __future__ import annotations

import random
import signal
import time

from bench.drills_lib.drill import DrillContext
from bench.drills_lib.jobs import JobFacts, running_stage, shorten_decoder, wait_for
from bench.drills_lib.processes import alive
from shared.db.models import Job

# A decoder long enough (~3 s at n=1 here) to be caught running; resumed attempts get 2 steps.
LONG_DECODER = {"prior": 2, "decoder": 250, "upsampler": 2}
CATCH_TIMEOUT_S = 120.0
# SIGTERM: the worker is gone within the drain timeout and this (worker/tasks/drain.py).
EXIT_MARGIN_S = 1.0


def _by_id(facts: list[JobFacts], job_id: str) -> JobFacts | None:
    return next((f for f in facts if f.id == job_id), None)


def _stage_runs(fact: JobFacts | None, stage: str, status: str) -> int:
    return 0 if fact is None else sum(s == stage and st == status for s, _, st, _ in fact.attempts)


def _attempts_per_stage(fact: JobFacts | None) -> list[int]:
    if fact is None:
        return []
    stages = [stage for stage, _, _, _ in fact.attempts]
    return [stages.count(stage) for stage in set(stages)]


def _catch_decoder(ctx: DrillContext, job_id: str) -> Job:
    """Wait for the decoder to be running; make later attempts short; the job row then."""
    job = wait_for(ctx.s.db(), job_id, running_stage("decoder"), timeout_s=CATCH_TIMEOUT_S)
    shorten_decoder(ctx.s.db(), job_id)  # what a resumed attempt will read
    return job


def _time_takeover(ctx: DrillContext, job_id: str, attempt: int, since: float) -> None:
    """Note how long until another attempt claimed the job (or it ended)."""
    try:
        wait_for(
            ctx.s.db(),
            job_id,
            lambda j: j.attempt > attempt or j.status == "succeeded",
            timeout_s=ctx.left_s(),
            poll_s=0.1,
        )
        ctx.note(f"taken over {time.monotonic() - since:.1f} s after the kill")
    except TimeoutError:
        ctx.note(f"no new attempt {ctx.deadline_s:.0f} s after the kill")


def pool_kill(ctx: DrillContext) -> None:
    """kill -9 the pool process running a decoder; the job resumes at the decoder."""
    ctx.ensure_workers("w1", "w2")
    victim = ctx.submit_one(steps=LONG_DECODER)
    ctx.submit(3)
    job = _catch_decoder(ctx, victim)
    _, pid = ctx.holder(job)
    killed = time.monotonic()
    ctx.damage()
    ctx.kill_pid(pid)
    _time_takeover(ctx, victim, job.attempt, killed)
    ctx.after("victim succeeded", lambda f: getattr(_by_id(f, victim), "status", "") == "succeeded")
    ctx.after(
        "prior ran once (resumed at the decoder)",
        lambda f: _stage_runs(_by_id(f, victim), "prior", "succeeded") == 1,
    )


def main_kill(ctx: DrillContext) -> None:
    """kill -9 only the main process of the worker running a decoder; its pool child is orphaned."""
    ctx.ensure_workers("w1", "w2")
    victim = ctx.submit_one(steps=LONG_DECODER)
    ctx.submit(3)
    job = _catch_decoder(ctx, victim)
    worker, _ = ctx.holder(job)
    killed = time.monotonic()
    ctx.damage()
    worker.send(signal.SIGKILL)
    _time_takeover(ctx, victim, job.attempt, killed)
    ctx.after("victim succeeded", lambda f: getattr(_by_id(f, victim), "status", "") == "succeeded")


def worker_kill(ctx: DrillContext) -> None:
    """kill -9 a whole worker (main and pool, as when its host dies) during a decoder."""
    ctx.ensure_workers("w1", "w2")
    victim = ctx.submit_one(steps=LONG_DECODER)
    ctx.submit(3)
    job = _catch_decoder(ctx, victim)
    worker, _ = ctx.holder(job)
    killed = time.monotonic()
    ctx.damage()
    worker.kill_group(signal.SIGKILL)
    _time_takeover(ctx, victim, job.attempt, killed)
    ctx.after("victim succeeded", lambda f: getattr(_by_id(f, victim), "status", "") == "succeeded")


def repeated_kills(ctx: DrillContext) -> None:
    """20 jobs on two workers; three kills -9 during decoders (pool, whole worker, pool); a
    killed worker is replaced, as a supervisor would."""
    rng = random.Random(7)
    ctx.ensure_workers("w1", "w2")
    ids = ctx.submit(20, steps={"prior": 2, "decoder": 40, "upsampler": 2})
    spares = iter(("w3", "w4", "w5"))
    victims: set[str] = set()
    for kind in ("pool", "worker", "pool"):
        job = _next_running_decoder(ctx, [i for i in ids if i not in victims])
        if job is None:
            ctx.note(f"no decoder left to kill ({kind})")
            break
        worker, pid = ctx.holder(job)
        victims.add(job.id)
        if kind == "pool":
            ctx.kill_pid(pid)
        else:
            worker.kill_group(signal.SIGKILL)
            ctx.s.start_worker(next(spares), wait=False)
        ctx.damage()
        ctx.note(f"killed {kind} of {worker.name} on job {job.id[:8]}")
        time.sleep(rng.uniform(1.0, 3.0))
    ctx.after("all 20 succeeded", lambda f: sum(x.status == "succeeded" for x in f) == 20)


def _next_running_decoder(ctx: DrillContext, ids: list[str]) -> Job | None:
    deadline = time.monotonic() + CATCH_TIMEOUT_S
    while time.monotonic() < deadline:
        with ctx.s.db()() as session:
            for job_id in ids:
                job = session.get_one(Job, job_id)
                if running_stage("decoder")(job) and alive(ctx.holder(job)[1]):
                    session.expunge(job)
                    return job
        time.sleep(0.05)
    return None


def sigterm_mid_stage(ctx: DrillContext) -> None:
    """SIGTERM the worker running a long decoder, as `docker stop` does; SIGKILL it after the
    grace period (drain timeout + 10 s) if it is still there, as docker would."""
    ctx.ensure_workers("w1", "w2")
    long_decoder = {"prior": 2, "decoder": 250, "upsampler": 2}
    victim = ctx.submit_one(steps=long_decoder, n=8)  # ~8x the work per step: > drain timeout
    job = _catch_decoder(ctx, victim)
    worker, _ = ctx.holder(job)
    grace = ctx.s.config.drain_timeout_s + 10.0
    started = time.monotonic()
    worker.send(signal.SIGTERM)
    ctx.damage()
    exited = worker.wait_exit(grace)
    took = time.monotonic() - started
    if not exited:
        worker.kill_group(signal.SIGKILL)
        ctx.note(f"worker still running {grace:.0f} s after SIGTERM: SIGKILLed")
    else:
        ctx.note(f"worker exited {took:.1f} s after SIGTERM")
    ctx.check(f"worker exited within the grace period ({grace:.0f} s)", exited)
    drain_s = ctx.s.config.drain_timeout_s
    ctx.check(f"worker exited within the drain timeout + {EXIT_MARGIN_S:g} s",
              exited and took <= drain_s + EXIT_MARGIN_S)  # fmt: skip

    def victim_succeeded(facts: list[JobFacts]) -> bool:
        fact = _by_id(facts, victim)
        runs = [
            f"{w.split('@')[0]} {st}"
            for s, _, st, w in (fact.attempts if fact else [])
            if s == "decoder"
        ]
        ctx.note("decoder attempts: " + ", ".join(runs))
        return fact is not None and fact.status == "succeeded"

    ctx.after("victim succeeded", victim_succeeded)


def poison_crash(ctx: DrillContext) -> None:
    """A job whose every attempt dies (its pool process killed at each claim) beside 6 healthy
    ones: it must end failed after max_attempts, not loop; the others succeed."""
    ctx.ensure_workers("w1")
    poison = ctx.submit_one(steps=LONG_DECODER)
    healthy = ctx.submit(6)
    seen: set[int] = set()
    deadline = time.monotonic() + ctx.deadline_s
    while time.monotonic() < deadline and len(seen) < 2 * ctx.s.config.max_attempts + 2:
        try:
            job = wait_for(
                ctx.s.db(),
                poison,
                lambda j: (
                    j.status in ("succeeded", "failed", "cancelled")
                    or (j.worker_id is not None and j.attempt not in seen)
                ),
                timeout_s=max(1.0, deadline - time.monotonic()),
            )
        except TimeoutError:
            break
        if job.worker_id is None:
            break  # terminal
        seen.add(job.attempt)
        ctx.kill_pid(ctx.holder(job)[1])
        ctx.damage()
    ctx.note(f"killed {len(seen)} attempts of the poison job")
    max_attempts = ctx.s.config.max_attempts
    ctx.after("poison job failed", lambda f: getattr(_by_id(f, poison), "status", "") == "failed")
    ctx.after(
        "the 6 healthy jobs succeeded",
        lambda f: all(getattr(_by_id(f, h), "status", "") == "succeeded" for h in healthy),
    )
    ctx.after(
        f"poison tried at most {max_attempts} times per stage",
        lambda f: max(_attempts_per_stage(_by_id(f, poison)), default=0) <= max_attempts,
    )
