"""Following a job to its end: server-sent events when the server has them, polling otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.client.api_client import ApiClient, ApiError

STAGES = ("prior", "decoder", "upsampler")
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "rejected", "held", "expired"})
POLL_INTERVAL_S = 0.5


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
        return JobState("queued", queue_position=data.get("queue_position"),
                        eta_s=data.get("eta_s"))  # fmt: skip
    if name == "started":
        return JobState(stage or previous.status, stage=stage, step=0, steps=data.get("steps"))
    if name == "progress":
        return JobState(stage or previous.status, stage=stage, step=data.get("step"),
                        steps=data.get("steps"))  # fmt: skip
    if name == "stage_done":
        return JobState(previous.status, stage=stage, step=data.get("steps", previous.steps),
                        steps=data.get("steps", previous.steps))  # fmt: skip
    return previous


def _events(client: ApiClient, job_id: str, first: JobState) -> Iterator[JobState]:
    state = first
    for event in client.events(job_id):
        state = _from_event(state, event.event, event.data)
        yield state
        if state.terminal:
            return


def _poll(
    client: ApiClient, job_id: str, interval_s: float, sleep: Callable[[float], None]
) -> Iterator[JobState]:
    while True:
        state = state_of(client.job(job_id))
        yield state
        if state.terminal:
            return
        sleep(interval_s)


def follow(
    client: ApiClient,
    job_id: str,
    *,
    use_events: bool = True,
    interval_s: float = POLL_INTERVAL_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[JobState]:
    """States of the job until a terminal one; SSE first, polling when SSE is absent or breaks."""
    state = state_of(client.job(job_id))
    yield state
    if state.terminal:
        return
    if use_events:
        try:
            for streamed in _events(client, job_id, state):
                yield streamed
                if streamed.terminal:
                    return
        except ApiError:
            pass  # no event stream on this server (or it broke): poll instead
    yield from _poll(client, job_id, interval_s, sleep)
