"""Dynamic batching: one stage message wakes a worker, which renders several waiting jobs at once.

How a batch forms: the task claims its own job as usual (the "lead"), then claims up to
settings.batch.max - 1 compatible jobs straight from the database (shared/db/batch_claims.py),
looking for up to settings.batch.wait_ms. Compatible: same stage, and for that stage the same
steps and sampler, the same output size and the worker's one family. Guidance may differ (the
library takes a scale per row), but a scale of exactly 1 batches only with 1 (see compat_key).
The extra jobs' own queue messages stay in the queue, so no message is acked before its job
is done; delivered later, they find the job claimed or moved on and are acked without work
(the claim check). If this worker dies, the extra claims go stale and the sweeper (or their
own messages, once stale) takes them over.

How it runs: every job goes through RenderTask's own per-job path (claim, heartbeat, progress,
cancel, failure, completion, hand-off), the lead in the task's thread and each other job in a
thread of its own. Only the model library call is shared: each job's stage task calls
`run_in_batch` instead of the library, which waits until every job of the batch has either
arrived there or finished early (failed or stopped before sampling), then makes one library
call over all of them in the lead's thread and hands each job its own output.

Per-job endings inside the shared call:
- A job cancelled (or whose claim is lost) mid-sampling is dropped from the batch: its progress
  callback's exception is caught and kept for that job, the sampling goes on for the others,
  and the dropped job's rows are computed to the end and discarded (the library's callback can
  only stop the whole call; finishing costs the dropped rows' compute, re-running would cost
  the others' steps again). If every job is dropped the call stops at once.
- A library call that fails is re-run one job at a time, so a failing job fails alone
  (out-of-memory included). A soft time limit or a drain stops every job of the batch.
With settings.reproducible on a CPU worker the library makes a row's numbers independent of
its batch (worker/unclip/batch_invariance.py), so a batched job gives the very images it gives
alone; otherwise (the default, full speed) they agree within float tolerance
(tests/worker/tasks/test_batching.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select
from torch import Tensor

from shared import metrics
from shared.db.batch_claims import waiting_jobs
from shared.db.claims import Claim, claim_stage
from shared.db.models import Job
from shared.db.states import Stage
from shared.logging import bind_job
from worker.tasks import drain
from worker.tasks.device_turns import device_turn
from worker.tasks.job_spec import params_used
from worker.tasks.progress import Drained, one_transaction
from worker.tasks.telemetry import record_stage_run
from worker.unclip.decoder_stage import run_decoder
from worker.unclip.prior_stage import run_prior
from worker.unclip.render_spec import ProgressCallback, RenderSpec, StepProgress
from worker.unclip.upsampler_stage import run_upsampler

if TYPE_CHECKING:
    from worker.tasks.base import Outcome, RenderTask, Resources
    from worker.unclip.family import Family

log = logging.getLogger(__name__)

LOOK_AGAIN_S = 0.01  # how often a worker looks for more jobs within batch.wait_ms
LEAD = 0
# family, stage, steps, sampler, size, guidance scale exactly 1
CompatKey = tuple[str, str, int, str, str, bool]


class StageCall(Protocol):
    def __call__(self, family: Family, specs: Sequence[RenderSpec],
                 inputs: Sequence[Tensor | None], callback: ProgressCallback | None
                 ) -> list[Tensor]: ...  # fmt: skip


def _prior(family: Family, specs: Sequence[RenderSpec], inputs: Sequence[Tensor | None],
           callback: ProgressCallback | None) -> list[Tensor]:  # fmt: skip
    return run_prior(family, specs, callback=callback)


def _decoder(family: Family, specs: Sequence[RenderSpec], inputs: Sequence[Tensor | None],
             callback: ProgressCallback | None) -> list[Tensor]:  # fmt: skip
    return run_decoder(family, specs, _tensors(inputs), callback=callback)


def _upsampler(family: Family, specs: Sequence[RenderSpec], inputs: Sequence[Tensor | None],
               callback: ProgressCallback | None) -> list[Tensor]:  # fmt: skip
    return run_upsampler(family, specs, _tensors(inputs), callback=callback)


def _tensors(inputs: Sequence[Tensor | None]) -> list[Tensor]:
    out = [x for x in inputs if x is not None]
    if len(out) != len(inputs):
        raise ValueError("the decoder and upsampler need each job's stored input, got None")
    return out


STAGE_CALLS: dict[Stage, StageCall] = {
    Stage.prior: _prior,
    Stage.decoder: _decoder,
    Stage.upsampler: _upsampler,
}


@dataclass(frozen=True)
class BatchSize:
    """The library call a job's stage output came from: its jobs and their images."""

    jobs: int
    rows: int


def _size_of(entries: Sequence[_Entry]) -> BatchSize:
    return BatchSize(jobs=len(entries), rows=sum(entry.spec.n for entry in entries))


def last_batch_size() -> BatchSize:
    """The call the last run_in_batch of this thread ran in (one job alone when none ran)."""
    size: BatchSize | None = getattr(_member, "last_size", None)
    return size or BatchSize(jobs=1, rows=1)


class BatchAbandoned(Drained):
    """The batch's shared call will not run (its lead stopped): hand the job back."""


class _AllDropped(Exception):
    """Every job of the batch stopped: end the shared call early."""


@dataclass
class _Entry:
    spec: RenderSpec
    stage_input: Tensor | None
    progress: ProgressCallback
    output: Tensor | None = None
    error: BaseException | None = None
    size: BatchSize | None = None  # the call this entry's output came from (manifest)


@dataclass
class SharedCall:
    """The one library call of a batch, which each job joins (or leaves without joining)."""

    stage: Stage
    members: int
    turns: bool = False  # take the device's turn for the call (worker/tasks/device_turns.py)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _arrived: set[int] = field(default_factory=set)
    _entries: dict[int, _Entry] = field(default_factory=dict)
    _done: bool = False

    def join(self, member: int, family: Family, entry: _Entry) -> Tensor:
        """This member's output of the shared call (which the lead makes once all are in)."""
        with self._cond:
            if self._done or member in self._arrived:
                raise BatchAbandoned(f"the {self.stage} batch already ran without this job")
            self._arrived.add(member)
            self._entries[member] = entry
            self._cond.notify_all()
        if member == LEAD:
            self.serve(family)
        with self._cond:
            self._cond.wait_for(lambda: self._done)
        if entry.error is not None:
            raise entry.error
        assert entry.output is not None  # every entry gets an output or an error
        return entry.output

    def leave(self, member: int) -> None:
        """The member finished without joining (failed, stopped, or never sampled)."""
        with self._cond:
            self._arrived.add(member)
            self._cond.notify_all()

    def abandon(self) -> None:
        """Give up the call: members waiting or still to come are handed back."""
        with self._cond:
            for entry in self._entries.values():
                if entry.output is None and entry.error is None:
                    entry.error = BatchAbandoned(f"the {self.stage} batch was abandoned")
            self._done = True
            self._cond.notify_all()

    def serve(self, family: Family) -> None:
        """(The lead) wait until every member arrived, then make the call, once."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._arrived) >= self.members or self._done)
            if self._done:
                return
            entries = [self._entries[m] for m in sorted(self._entries)]
        try:
            if entries:
                metrics.observe_batch(self.stage.value, len(entries))
                with device_turn(family.device, self.turns):
                    _run_shared(STAGE_CALLS[self.stage], family, entries)
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()


def _run_shared(call: StageCall, family: Family, entries: list[_Entry]) -> None:
    """One library call over `entries`, each ending with its own output or error."""

    def fan_out(step: StepProgress) -> None:
        try:
            with one_transaction():  # the jobs' progress writes and cancel checks, together
                for entry in entries:
                    if entry.error is None:
                        try:
                            entry.progress(step)
                        except Drained:
                            raise  # the worker is shutting down: every job is handed back
                        except Exception as exc:  # cancelled, claim lost, progress not written
                            entry.error = exc
        except Drained:
            raise
        except Exception as exc:  # the step's transaction did not commit: no job's progress did
            _give_all(entries, exc)
        if all(entry.error is not None for entry in entries):
            raise _AllDropped

    try:
        outputs = call(family, [e.spec for e in entries], [e.stage_input for e in entries],
                       fan_out)  # fmt: skip
    except _AllDropped:
        return
    except (Drained, SoftTimeLimitExceeded) as stop:
        _give_all(entries, stop)
        return
    except Exception as exc:
        _run_alone(call, family, [e for e in entries if e.error is None], exc)
        return
    for entry, output in zip(entries, outputs, strict=True):
        if entry.error is None:
            entry.output, entry.size = output, _size_of(entries)


def _give_all(entries: list[_Entry], exc: BaseException) -> None:
    for entry in entries:
        if entry.error is None:
            entry.error = exc


def _run_alone(call: StageCall, family: Family, entries: list[_Entry], exc: Exception) -> None:
    """After a failed shared call: each job alone, so only a failing job fails."""
    if len(entries) <= 1:
        _give_all(entries, exc)
        return
    log.warning("batch of %d failed (%s: %s); running its jobs one at a time", len(entries),
                type(exc).__name__, exc)  # fmt: skip
    for entry in entries:
        try:
            [entry.output] = call(family, [entry.spec], [entry.stage_input], entry.progress)
            entry.size = _size_of([entry])
        except Exception as alone:
            entry.error = alone


# ---- what a stage task calls instead of the library ------------------------------------------
_member = threading.local()


def run_in_batch(
    stage: Stage,
    family: Family,
    spec: RenderSpec,
    stage_input: Tensor | None,
    progress: ProgressCallback,
    *,
    turns: bool = False,
) -> Tensor:
    """This job's output of `stage`: from its batch's shared call, or alone when unbatched.
    With `turns` the call holds the device's turn (settings.pipeline > 1)."""
    current: tuple[SharedCall, int] | None = getattr(_member, "current", None)
    if current is None or current[0].stage != stage:
        with device_turn(family.device, turns):
            [output] = STAGE_CALLS[stage](family, [spec], [stage_input], progress)
        _member.last_size = BatchSize(jobs=1, rows=spec.n)
        return output
    shared, member = current
    entry = _Entry(spec, stage_input, progress)
    output = shared.join(member, family, entry)
    _member.last_size = entry.size
    return output


# ---- forming and running a batch ---------------------------------------------------------------
def compat_key(job: Job, family: Family, stage: Stage) -> CompatKey:
    """What jobs must share to run as one batch of `stage`.

    Guidance scales may differ (the library takes one per row), except that a stage whose
    every scale is 1 skips the unconditional half (worker/unclip/guidance.py), which gives
    other last bits than the guided formula at s = 1: scale 1 batches only with scale 1.
    """
    used = params_used(job, family)
    guidance = {Stage.prior: used.prior_guidance, Stage.decoder: used.decoder_guidance}
    unguided = guidance.get(stage) == 1.0
    return (used.family, stage.value, int(getattr(used.steps, stage.value)), used.sampler,
            used.size, unguided)  # fmt: skip


def gather_batch(task: RenderTask, res: Resources, lead: Claim, lead_job: Job) -> Batch | None:
    """The lead's batch: compatible waiting jobs claimed for it, None when there are none.
    `lead_job` is the lead's row as its claim left it."""
    want = res.settings.batch.max - 1
    if want < 1 or drain.draining():
        return None
    family = task.family()
    try:
        key = compat_key(lead_job, family, lead.stage)
    except Exception:  # the lead's own run reports what is wrong with its row
        return None
    deadline = time.monotonic() + res.settings.batch.wait_ms / 1000.0
    claims: list[tuple[Claim, Job]] = []
    while True:
        taken = [lead.job_id, *(c.job_id for c, _ in claims)]
        try:
            claims += _claim_compatible(task, res, key, family, lead.stage, taken,
                                        want - len(claims))  # fmt: skip
        except Exception:  # batching is an optimisation: run with what is claimed so far
            log.warning("job %s: could not look for jobs to batch with", lead.job_id,
                        exc_info=True)  # fmt: skip
            break
        left = deadline - time.monotonic()
        if len(claims) >= want or left <= 0:
            break
        time.sleep(min(LOOK_AGAIN_S, left))
    if not claims:
        return None
    log.info("job %s: %s batched with %s", lead.job_id, lead.stage,
             ", ".join(c.job_id for c, _ in claims))  # fmt: skip
    return Batch(task, lead, [c for c, _ in claims], [lead_job, *(job for _, job in claims)])


def _claim_compatible(task: RenderTask, res: Resources, key: CompatKey, family: Family,
                      stage: Stage, taken: list[str], want: int
                      ) -> list[tuple[Claim, Job]]:  # fmt: skip
    """Claims of up to `want` waiting jobs compatible with `key`, each with its row."""
    claims: list[tuple[Claim, Job]] = []
    with res.sessions.begin() as session:
        for job in waiting_jobs(session, stage=stage, exclude=taken, limit=max(4 * want, 16)):
            if len(claims) >= want:
                break
            try:
                compatible = compat_key(job, family, stage) == key
            except ValueError:  # a row the job's own delivery will fail, with why
                compatible = False
            if not compatible:
                continue
            claim = claim_stage(
                session, job_id=job.id, stage=stage, worker_id=task.worker_id(),
                stale_after_s=res.settings.heartbeat_stale_s,
                max_attempts=res.settings.max_attempts,
            )  # fmt: skip
            if claim is not None:
                task.on_claimed(session, job)  # what the stage records at its claim
                claims.append((claim, job))
        if claims:  # one read brings back what the claims expired (started_at), for every row
            session.scalars(
                select(Job).where(Job.id.in_([c.job_id for c, _ in claims]))
                .execution_options(populate_existing=True)
            ).all()  # fmt: skip
    return claims


class Batch:
    """A lead claim and the claims gathered for it, run through `run_claimed` each; `jobs`
    are their rows as their claims left them, the lead's first."""

    def __init__(self, task: RenderTask, lead: Claim, others: list[Claim],
                 jobs: Sequence[Job] = ()) -> None:  # fmt: skip
        self.task, self.lead, self.others, self.jobs = task, lead, others, list(jobs)
        self.shared = SharedCall(stage=lead.stage, members=1 + len(others),
                                 turns=task.takes_turns())  # fmt: skip

    def run(self, run_claimed: Callable[[Claim], Outcome]) -> Outcome:
        """Run every job (the lead in this thread); returns once all are done, the lead's end."""
        threads = [
            threading.Thread(
                target=self._run_other,
                args=(member, claim, run_claimed),
                name=f"batch-{claim.job_id}",
                daemon=True,
            )  # fmt: skip
            for member, claim in enumerate(self.others, start=1)
        ]
        for thread in threads:
            thread.start()
        _member.current = (self.shared, LEAD)
        try:
            return run_claimed(self.lead)
        finally:
            _member.current = None
            self.shared.leave(LEAD)
            try:
                self.shared.serve(self.task.family())  # when the lead ended before sampling
            except BaseException:
                self.shared.abandon()
                raise
            finally:
                for thread in threads:
                    thread.join()

    def _run_other(self, member: int, claim: Claim, run_claimed: Callable[[Claim], Any]) -> None:
        _member.current = (self.shared, member)
        bind_job(job_id=claim.job_id, stage=claim.stage.value, attempt=claim.attempt)
        started = time.monotonic()
        try:
            outcome = run_claimed(claim)
            # Celery's task signals see only the lead's run; this job's metrics come from here.
            record_stage_run(claim.stage.value, outcome, time.monotonic() - started)
        except BaseException:
            # Its own path already recorded what it could; its message (still queued) or the
            # sweeper takes the job up again.
            log.exception("job %s: %s in a batch ended with an error", claim.job_id,
                          claim.stage)  # fmt: skip
        finally:
            self.shared.leave(member)
