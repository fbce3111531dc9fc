"""Per-step progress of a running stage: written at a bounded rate, cancel checked often."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from sqlalchemy.orm import Session, sessionmaker

from shared.db.claims import Claim, job_status, record_progress
from shared.db.states import JobStatus, overall_progress
from worker.tasks import drain
from worker.unclip.render_spec import StepProgress


class JobCancelled(Exception):
    """The job was cancelled while this stage ran; raised from the sampler's callback."""


class ClaimLost(Exception):
    """The job is no longer this attempt's (another worker re-claimed it, or it moved on)."""


class Drained(Exception):
    """The worker is shutting down and the drain timeout passed: hand the job back."""


class _StepTransaction:
    """The transaction the writers of one batch share at one step, opened on first use."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._session: Session | None = None

    def session(self, sessions: sessionmaker[Session]) -> Session:
        if self._session is None:
            self._session = self._stack.enter_context(sessions.begin())
        return self._session


_step = threading.local()


@contextmanager
def one_transaction() -> Iterator[None]:
    """ProgressWriters called in this block (in this thread) write their progress and read
    their job's status in one transaction, committed at the end of the block: a batch's
    jobs cost one transaction per step that needs one, not one each. Each write stays
    conditional on its own claim, and each writer still raises for its own job."""
    with ExitStack() as stack:
        _step.current = _StepTransaction(stack)
        try:
            yield
        finally:
            _step.current = None


@contextmanager
def _session_for(sessions: sessionmaker[Session], *, write: bool) -> Iterator[Session]:
    shared: _StepTransaction | None = getattr(_step, "current", None)
    if shared is not None:
        yield shared.session(sessions)
        return
    with sessions.begin() if write else sessions() as session:
        yield session


class ProgressWriter:
    """The ProgressCallback a stage passes to the model library.

    At most once per `cancel_check_s` (0: every step) it reads the job's status, so a
    cancelled job stops at the first step that ends after that long; reading it at every
    step of a small model cost more than the steps (docs/benchmarks.md). Once `interval_s`
    has passed since the claim (which wrote step 0) and the last write, it writes step,
    total, overall progress and the heartbeat, conditional on the claim; losing the claim
    stops the stage as well. The last step is not written here: `finish` writes it in the
    transaction that completes the stage, so a stage shorter than `interval_s` costs no
    transaction of its own for progress. A worker draining past its drain timeout stops the
    stage at the step (raises Drained).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        claim: Claim,
        *,
        interval_s: float,
        cancel_check_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._claim = claim
        self._interval_s = interval_s
        self._cancel_check_s = cancel_check_s
        self._clock = clock
        # The claim just wrote step 0 and read the status: both are due again from here.
        self._last_write = self._last_check = clock()
        self._final: StepProgress | None = None  # the last step, for finish() to write
        self.writes = 0
        self.steps = 0

    def __call__(self, progress: StepProgress) -> None:
        self.steps += 1
        if drain.overdue():
            raise Drained(
                f"worker shutting down: stage {self._claim.stage} of job {self._claim.job_id} "
                f"stopped at step {progress.step} of {progress.total} past the drain timeout"
            )
        now = self._clock()
        if progress.step >= progress.total:
            self._final = progress  # written by finish(), in the completing transaction
        elif now - self._last_write >= self._interval_s:
            self._write(progress)
            self._last_write = self._last_check = now
            return
        if now - self._last_check >= self._cancel_check_s:
            self._check()
            self._last_check = now

    def finish(self, session: Session) -> bool:
        """Write the last step's progress in the caller's transaction (the one that completes
        the stage); False when the claim is gone. Nothing to write when no last step came."""
        final, self._final = self._final, None
        if final is None:
            return True
        self.writes += 1
        return record_progress(
            session, self._claim, step=final.step, total=final.total,
            progress=overall_progress(self._claim.stage, final.step, final.total),
        )  # fmt: skip

    def _write(self, progress: StepProgress) -> None:
        # The library may report sub-stages by their own names; the claim's stage is the truth.
        stage = self._claim.stage
        value = overall_progress(stage, progress.step, progress.total)
        with _session_for(self._sessions, write=True) as session:
            ok = record_progress(
                session, self._claim, step=progress.step, total=progress.total, progress=value
            )
            status = None if ok else job_status(session, self._claim.job_id)
        self.writes += 1
        if not ok:
            self._raise_for(status)

    def _check(self) -> None:
        with _session_for(self._sessions, write=False) as session:
            status = job_status(session, self._claim.job_id)
        if status == JobStatus.cancelled:
            self._raise_for(status)

    def _raise_for(self, status: str | None) -> None:
        if status == JobStatus.cancelled:
            raise JobCancelled(f"job {self._claim.job_id} was cancelled")
        raise ClaimLost(
            f"job {self._claim.job_id} attempt {self._claim.attempt} no longer holds stage "
            f"{self._claim.stage} (job status now {status!r})"
        )
