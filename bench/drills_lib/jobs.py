"""Submitting drill jobs over HTTP and reading what became of them straight from the database.

The verdict is the database's, not the API's: a job counts as submitted once its row exists
(even if the client's request timed out), as lost when it is not terminal by the deadline,
and as duplicated when a stage of it completed twice or it has more published images than
it asked for.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import Job, JobImage, StageAttempt

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "rejected"})
STEPS = {"prior": 2, "decoder": 2, "upsampler": 2}
PROMPTS = ("a red circle", "a blue square", "a green triangle", "a yellow star")


@dataclass(frozen=True)
class Submission:
    """One POST /v1/jobs: the HTTP status (0: no answer), the job id if any, how long it took."""

    status: int
    job_id: str | None
    seconds: float
    retry_after: str | None = None
    error: str | None = None


def submit(
    client: httpx.Client,
    *,
    seed: int,
    steps: dict[str, int] | None = None,
    n: int = 1,
    timeout_s: float = 10.0,
) -> Submission:
    """POST a small generate job (64x64, 2/2/2 steps unless `steps` says otherwise)."""
    body = {
        "kind": "generate",
        "prompt": PROMPTS[seed % len(PROMPTS)],
        "n": n,
        "size": "64x64",
        "seed": seed,
        "steps": steps or STEPS,
    }
    started = time.monotonic()
    try:
        response = client.post("/v1/jobs", json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return Submission(0, None, time.monotonic() - started, error=type(exc).__name__)
    seconds = time.monotonic() - started
    job_id = response.json().get("id") if response.status_code in (200, 202) else None
    return Submission(
        response.status_code,
        job_id,
        seconds,
        response.headers.get("Retry-After"),
        None if job_id else response.text[:300],
    )


def submit_many(
    client: httpx.Client, count: int, *, first_seed: int = 1, steps: dict[str, int] | None = None
) -> list[Submission]:
    return [submit(client, seed=first_seed + i, steps=steps) for i in range(count)]


@dataclass
class JobFacts:
    """What the database says about one job."""

    id: str
    status: str
    n: int
    error_code: str | None
    published: int
    image_attempts: set[int]
    succeeded_by_stage: Counter[str]
    attempts: list[tuple[str, int, str, str]]  # (stage, attempt, status, worker id)
    rendered_pngs: int = 0

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def duplicated(self) -> bool:
        twice = any(count > 1 for count in self.succeeded_by_stage.values())
        return twice or self.published > self.n or len(self.image_attempts) > 1


def job_facts(
    sessions: sessionmaker[Session],
    *,
    since: datetime | None = None,
    storage_root: Path | None = None,
) -> list[JobFacts]:
    """Every job created at or after `since` (all jobs when None), oldest first."""
    with sessions() as session:
        query = select(Job).order_by(Job.created_at)
        if since is not None:
            query = query.where(Job.created_at >= since)
        jobs = session.scalars(query).all()
        ids = [job.id for job in jobs]
        images = session.execute(
            select(JobImage.job_id, JobImage.attempt, JobImage.published).where(
                JobImage.job_id.in_(ids)
            )
        ).all()
        attempts = session.execute(
            select(
                StageAttempt.job_id,
                StageAttempt.stage,
                StageAttempt.attempt,
                StageAttempt.status,
                StageAttempt.worker_id,
            )
            .where(StageAttempt.job_id.in_(ids))
            .order_by(StageAttempt.attempt, StageAttempt.started_at)
        ).all()
    facts = {
        job.id: JobFacts(job.id, job.status, job.n, job.error_code, 0, set(), Counter(), [])
        for job in jobs
    }
    for job_id, attempt, published in images:
        if published:
            facts[job_id].published += 1
            facts[job_id].image_attempts.add(attempt)
    for job_id, stage, attempt, status, worker in attempts:
        facts[job_id].attempts.append((stage, attempt, status, worker or ""))
        if status == "succeeded":
            facts[job_id].succeeded_by_stage[stage] += 1
    if storage_root is not None:
        for fact in facts.values():
            fact.rendered_pngs = len(
                list((storage_root / "jobs" / fact.id).glob("attempt-*/images/*.png"))
            )
    return list(facts.values())


def wait_terminal(
    sessions: sessionmaker[Session],
    *,
    timeout_s: float,
    since: datetime | None = None,
    expect: int | None = None,
) -> float:
    """Wait until every job since `since` is terminal (and at least `expect` exist); seconds."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        facts = job_facts(sessions, since=since)
        if facts and all(f.terminal for f in facts) and len(facts) >= (expect or 0):
            break
        time.sleep(0.5)
    return time.monotonic() - started


def wait_for(
    sessions: sessionmaker[Session],
    job_id: str,
    predicate: Callable[[Job], bool],
    *,
    timeout_s: float = 120.0,
    poll_s: float = 0.02,
) -> Job:
    """Poll the job row until `predicate(job)` holds; the row, or TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with sessions() as session:
            job = session.get_one(Job, job_id)
            session.expunge(job)
        if predicate(job):
            return job
        time.sleep(poll_s)
    raise TimeoutError(f"job {job_id} never reached the awaited state (now {job.status})")


def shorten_decoder(sessions: sessionmaker[Session], job_id: str, steps: int = 2) -> None:
    """Make the job's next decoder attempt run `steps` steps (a drill's resumed attempt ends
    soon): the request's column and, once the prior recorded them, the parameters the later
    stages run with (params_used, which they read first)."""
    with sessions.begin() as session:
        job = session.get_one(Job, job_id)
        job.steps_decoder = steps
        if job.params_used is not None:
            used = dict(job.params_used)
            used["steps"] = {**used.get("steps", {}), "decoder": steps}
            job.params_used = used  # a new object, so the JSON column is written


def running_stage(stage: str, min_step: int = 1) -> Callable[[Job], bool]:
    """A predicate: the job is in `stage`, held by a worker, `min_step` sampling steps done."""
    return lambda job: (
        job.status == stage
        and job.worker_id is not None
        and job.progress_stage == stage
        and (job.progress_step or 0) >= min_step
    )


@dataclass
class DrillResult:
    """One row of the drill table."""

    name: str
    submitted: int = 0
    succeeded: int = 0
    failed: int = 0
    lost: int = 0
    duplicated: int = 0
    refused: int = 0  # POSTs answered 503 (or not at all): no job row was promised
    rerendered: int = 0  # jobs whose images were rendered by more than one attempt (wasted work)
    seconds: float = 0.0
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and self.lost == 0
            and self.duplicated == 0
            and all(self.checks.values())
        )

    def failed_checks(self) -> list[str]:
        return [name for name, ok in self.checks.items() if not ok]


def tally(
    result: DrillResult, facts: list[JobFacts], submissions: Sequence[Submission] = ()
) -> DrillResult:
    """Fill the counts of `result` from the jobs' final facts and the client's submissions."""
    result.submitted = len(facts)
    result.succeeded = sum(f.status == "succeeded" for f in facts)
    result.failed = sum(f.status in ("failed", "cancelled", "rejected") for f in facts)
    result.lost = sum(not f.terminal for f in facts)
    result.duplicated = sum(f.duplicated for f in facts)
    result.rerendered = sum(f.rendered_pngs > f.n for f in facts)
    result.refused = sum(s.job_id is None for s in submissions)
    stuck = [f"{f.id[:8]}={f.status}" for f in facts if not f.terminal]
    if stuck:
        result.notes.append("not terminal: " + ", ".join(stuck[:6]))
    errors = Counter(f.error_code for f in facts if f.status == "failed")
    if errors:
        result.notes.append("failed: " + ", ".join(f"{k}x{v}" for k, v in errors.items()))
    return result
