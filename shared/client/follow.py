"""Following a job to its end: server-sent events when the server has them, polling otherwise.

The stream tells what happens; GET /v1/jobs/{id} has the last word. A terminal event, or the
end of the stream, is confirmed by a GET (a `held` job may be released and go on); a queued
job, whose stream is silent while it waits, has its position and ETA polled; a stream that
breaks is reconnected after the last event seen (Last-Event-ID), riding out an API restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

from shared.client.api_client import ApiClient, ApiError
from shared.client.reconnect import Reconnect
from shared.client.ticks import with_ticks

# The server's names (shared/db/states.py, shared/db/job_events.py); a test keeps them equal.
STAGES = ("prior", "decoder", "upsampler")
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "rejected", "held", "expired"})
POLL_INTERVAL_S = 0.5
QUEUE_REFRESH_S = 2.0  # how often a waiting job's queue position and ETA are polled
_ORDER = {"queued": 0, **{stage: i + 1 for i, stage in enumerate(STAGES)}}

Ending = Literal["final", "ended", "broke", "absent"]


@dataclass(frozen=True)
class JobState:
    """What a progress display needs to know of a job at one moment."""

    status: str
    stage: str | None = None
    step: int | None = None
    steps: int | None = None
    queue_position: int | None = None
    eta_s: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def state_of(job: dict[str, Any]) -> JobState:
    """The JobState of a job object (GET /v1/jobs/{id})."""
    stage = job.get("stage")
    steps = job.get("progress_total")
    if steps is None and stage in STAGES:
        steps = (job.get("steps") or {}).get(stage)
    return JobState(
        status=str(job.get("status")),
        stage=stage,
        step=job.get("progress_step"),
        steps=steps,
        queue_position=job.get("queue_position"),
        eta_s=job.get("eta_s"),
    )


def _from_event(previous: JobState, name: str, data: dict[str, Any]) -> JobState:
    if name in TERMINAL:
        return JobState(status=name)
    stage = data.get("stage", previous.stage)
    if name == "queued":
        # The event carries no standing: keep the one last polled while the job waits.
        known = previous if previous.status == "queued" else JobState("queued")
        position = data.get("queue_position")
        eta_s = data.get("eta_s")
        return JobState("queued", queue_position=known.queue_position if position is None
                        else position, eta_s=known.eta_s if eta_s is None else eta_s)  # fmt: skip
    if name == "started":
        return JobState(stage or previous.status, stage=stage, step=0, steps=data.get("steps"))
    if name == "progress":
        return JobState(stage or previous.status, stage=stage, step=data.get("step"),
                        steps=data.get("steps"))  # fmt: skip
    if name == "stage_done":
        return JobState(previous.status, stage=stage, step=data.get("steps", previous.steps),
                        steps=data.get("steps", previous.steps))  # fmt: skip
    return previous


def _reached(state: JobState, mark: JobState) -> bool:
    """Whether `state` is as far on as `mark`: a stream read from its start replays history."""

    def key(s: JobState) -> tuple[int, int]:
        return _ORDER.get(s.status, len(_ORDER)), s.step or 0

    return key(state) >= key(mark)


class _Follower:
    """One follow(): the job's state as known, the last event id seen, how to retry."""

    def __init__(self, client: ApiClient, job_id: str, *, interval_s: float, refresh_s: float,
                 sleep: Callable[[float], None], reconnect: Reconnect) -> None:  # fmt: skip
        self.client, self.job_id, self.reconnect = client, job_id, reconnect
        self.interval_s, self.refresh_s, self.sleep = interval_s, refresh_s, sleep
        self.state = JobState("unknown")
        self.last_id: str | None = None

    def _get(self) -> JobState:
        """The job as GET says, retried through a transient failure (ApiError past the limit)."""
        while True:
            try:
                job = self.client.job(self.job_id)
            except ApiError as exc:
                self.reconnect.wait(exc)
                continue
            self.reconnect.recovered()
            return state_of(job)

    def run(self, use_events: bool) -> Iterator[JobState]:
        self.state = state_of(self.client.job(self.job_id))  # no retry: a wrong --server fails
        yield self.state
        if self.state.terminal:
            return
        if use_events and (yield from self._stream()):
            return
        while True:  # no event stream on this server: poll
            self.state = self._get()
            yield self.state
            if self.state.terminal:
                return
            self.sleep(self.interval_s)

    def _stream(self) -> Generator[JobState, None, bool]:
        """States from the event stream to the job's end (True); False if there is no stream."""
        while True:
            ending = yield from self._connection()
            if ending == "final":
                return True
            if ending == "absent":
                return False
            if ending == "ended":
                # The stream closed, yet the job may go on: an older server closed it at the
                # first terminal-looking event of the history, e.g. a `held` later released.
                self.state = self._get()
                yield self.state
                if self.state.terminal:
                    return True
                self.sleep(self.interval_s)
            # "broke": the Reconnect has waited; resume after the last event seen

    def _connection(self) -> Generator[JobState, None, Ending]:
        """One connection to the event stream: the states it brings, then how it ended."""
        replaying, mark = self.last_id is None, self.state
        events = with_ticks(self.client.events(self.job_id, last_event_id=self.last_id),
                            self.refresh_s)  # fmt: skip
        try:
            while True:
                try:
                    event = next(events)
                except StopIteration:
                    return "ended"
                except ApiError as exc:
                    if not exc.transient:
                        return "absent"
                    self.reconnect.wait(exc)  # raises once the outage has lasted too long
                    return "broke"
                if event is None:  # quiet for refresh_s: the history, if any, is all read
                    replaying = False
                    yield from self._refresh_queued()
                    continue
                self.last_id = event.id or self.last_id
                self.reconnect.recovered()
                state = _from_event(self.state, event.event, event.data)
                if state.terminal:
                    confirmed = self._get()
                    if confirmed.terminal:
                        yield confirmed
                        return "final"
                    if not replaying:  # held and released already: the job goes on
                        state = confirmed
                self.state = state
                if replaying and (state.terminal or not _reached(state, mark)):
                    continue
                replaying = False
                yield state
        finally:
            events.close()

    def _refresh_queued(self) -> Iterator[JobState]:
        """A queued job's stream is silent until it starts: poll its position and ETA."""
        if self.state.status != "queued":
            return
        polled = self._get()
        if polled.status == "queued":
            self.state = replace(self.state, queue_position=polled.queue_position,
                                 eta_s=polled.eta_s)  # fmt: skip
            yield self.state


def follow(
    client: ApiClient,
    job_id: str,
    *,
    use_events: bool = True,
    interval_s: float = POLL_INTERVAL_S,
    refresh_s: float = QUEUE_REFRESH_S,
    sleep: Callable[[float], None] = time.sleep,
    reconnect: Reconnect | None = None,
) -> Iterator[JobState]:
    """Each new state of the job until a final one (as GET /v1/jobs/{id} confirms it).

    SSE first, polling when the server has no stream; a transient failure (no answer, 502,
    503, 504) is retried as `reconnect` allows (default: Reconnect() with this `sleep`).
    """
    follower = _Follower(client, job_id, interval_s=interval_s, refresh_s=refresh_s,
                         sleep=sleep, reconnect=reconnect or Reconnect(sleep=sleep))  # fmt: skip
    shown: JobState | None = None
    for state in follower.run(use_events):
        if state != shown:
            shown = state
            yield state
