"""What a drill is, the context it runs in, and running one against its own stack.

A drill function gets a DrillContext: it starts the workers it needs, submits jobs, does its
damage, and adds checks. The runner then waits until every job of the drill is terminal or
the deadline passes, and counts the outcome from the database.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from bench.drills_lib.jobs import (
    DrillResult,
    JobFacts,
    Submission,
    job_facts,
    submit,
    tally,
    wait_terminal,
)
from bench.drills_lib.processes import ManagedProcess
from bench.drills_lib.stack import Stack
from shared.db.base import utcnow
from shared.db.models import Job

PostCheck = Callable[[list[JobFacts]], bool]


@dataclass
class DrillContext:
    """One drill's stack, clock, submissions and checks."""

    stack: Stack
    name: str
    deadline_s: float
    since: datetime = field(default_factory=utcnow)
    submissions: list[Submission] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    post_checks: list[tuple[str, PostCheck]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    first_submit: float | None = None  # the drill's clock starts at its first job
    damage_at: float | None = None  # the deadline counts from the (last) damage done
    _seed: int = 0

    @property
    def s(self) -> Stack:
        return self.stack

    def ensure_workers(self, *names: str) -> list[ManagedProcess]:
        """Start the named workers unless already running (one per name, all queues)."""
        running = {p.name: p for p in self.s.processes if p.running()}
        started = [running.get(n) or self.s.start_worker(n, wait=False) for n in names]
        for worker in started:  # started side by side: each takes seconds to import torch
            worker.wait_for_log(" ready.")
        return started

    def submit(
        self,
        count: int = 1,
        *,
        steps: dict[str, int] | None = None,
        n: int = 1,
        timeout_s: float = 10.0,
    ) -> list[str]:
        """Submit `count` small jobs; the ids of those the API accepted."""
        ids = []
        if self.first_submit is None:
            self.first_submit = time.monotonic()
        for _ in range(count):
            self._seed += 1
            outcome = submit(self.s.client, seed=self._seed, steps=steps, n=n, timeout_s=timeout_s)
            self.submissions.append(outcome)
            if outcome.job_id:
                ids.append(outcome.job_id)
        return ids

    def submit_one(self, *, steps: dict[str, int] | None = None, n: int = 1) -> str:
        ids = self.submit(1, steps=steps, n=n)
        if not ids:
            raise RuntimeError(f"the API refused a drill job: {self.submissions[-1]}")
        return ids[0]

    def check(self, name: str, ok: bool) -> bool:
        self.checks[name] = bool(ok)
        return bool(ok)

    def after(self, name: str, predicate: PostCheck) -> None:
        """A check on the final job facts, made once the drill's jobs ended or time ran out."""
        self.post_checks.append((name, predicate))

    def damage(self) -> None:
        """Say the damage is done now: the jobs' deadline counts from here."""
        self.damage_at = time.monotonic()

    def left_s(self) -> float:
        """Seconds left before the deadline (the whole deadline before any damage)."""
        if self.damage_at is None:
            return self.deadline_s
        return max(0.0, self.deadline_s - (time.monotonic() - self.damage_at))

    def note(self, text: str) -> None:
        self.notes.append(text)

    # ---- helpers for acting on a worker -----------------------------------------------------
    def holder(self, job: Job) -> tuple[ManagedProcess, int]:
        """The worker process and pool pid that hold `job` now (from its worker_id)."""
        assert job.worker_id, f"job {job.id} is held by nobody"
        node, _, pid = job.worker_id.rpartition(":")
        name = node.split("@", 1)[0]
        return self.s.worker_named(name), int(pid)

    def kill_pid(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            self.note(f"pid {pid} was already gone")


DrillFn = Callable[[DrillContext], None]


@dataclass(frozen=True)
class Drill:
    """A named drill; `short` ones run in `make test` (tests/integration/test_drills.py)."""

    name: str
    fn: DrillFn
    what: str
    needs_sweeper: bool = False


def run_in(stack: Stack, drill: Drill, *, deadline_s: float) -> DrillResult:
    """Run `drill` on an open stack; every job the drill created is counted."""
    ctx = DrillContext(stack=stack, name=drill.name, deadline_s=deadline_s)
    result = DrillResult(drill.name)
    started = time.monotonic()
    try:
        drill.fn(ctx)
    except Exception as exc:  # the drill could not do its damage: say so in the table
        result.error = f"{type(exc).__name__}: {exc}"
        result.notes.append("drill error: " + traceback.format_exc(limit=3).splitlines()[-1])
    db = stack.db()
    wait_terminal(db, timeout_s=ctx.left_s(), since=ctx.since)
    storage = stack.data_dir / "storage"
    facts = job_facts(db, since=ctx.since, storage_root=storage)
    tally(result, facts, ctx.submissions)
    for name, predicate in ctx.post_checks:
        ctx.check(name, predicate(facts))
    result.checks.update(ctx.checks)
    result.notes = stack.problems + ctx.notes + result.notes
    result.seconds = time.monotonic() - (ctx.first_submit or started)
    return result
