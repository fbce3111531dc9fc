"""A scripted jobs API for client tests, served by httpx.MockTransport (no sockets, no sleeps).

`jobs` are the answers of GET /v1/jobs/{id}, in order (the last one repeats); each may be a job
object, an httpx.Response or an exception to raise. `streams` are the answers of the event
stream, one per connection: a list of (id, event, data) to send, with a threading.Event to wait
for or an exception to raise in between, or else an httpx.Response or an exception at connect.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.client.api_client import ApiClient

Answer = dict[str, Any] | httpx.Response | Exception
StreamItem = tuple[int, str, dict[str, Any]] | threading.Event | Exception
Stream = list[StreamItem] | httpx.Response | Exception


def job(status: str, stage: str | None = None, step: int | None = None,
        **fields: Any) -> dict[str, Any]:  # fmt: skip
    """A job object as GET /v1/jobs/{id} answers it (4 steps per stage)."""
    steps = {"prior": 4, "decoder": 4, "upsampler": 4}
    return {"id": "j1", "status": status, "kind": "generate", "stage": stage,
            "progress_step": step, "progress_total": 4 if stage else None, "steps": steps,
            "images": [], **fields}  # fmt: skip


def sse(event_id: int, event: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _body(items: list[StreamItem]) -> Iterator[bytes]:
    for item in items:
        if isinstance(item, threading.Event):
            assert item.wait(5), "the test never let the stream go on"
        elif isinstance(item, Exception):
            raise item
        else:
            yield sse(*item)


@dataclass
class FakeApi:
    jobs: list[Answer]
    streams: list[Stream] = field(default_factory=list)
    routes: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = field(
        default_factory=dict
    )
    requests: list[httpx.Request] = field(default_factory=list)
    job_gets: int = 0

    def client(self) -> ApiClient:
        return ApiClient("http://test", "k", transport=httpx.MockTransport(self.handler))

    def event_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/events")]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.path))
        if route is not None:
            return route(request)
        if request.url.path.endswith("/events"):
            assert self.streams, "an event stream was opened that the test did not script"
            return _answer(self.streams.pop(0))
        if request.method == "GET" and request.url.path.startswith("/v1/jobs/"):
            self.job_gets += 1
            answer = self.jobs[min(self.job_gets, len(self.jobs)) - 1]
            return _answer(answer)
        raise AssertionError(f"unexpected {request.method} {request.url.path}")


def _answer(answer: Answer | Stream) -> httpx.Response:
    if isinstance(answer, Exception):
        raise answer
    if isinstance(answer, httpx.Response):
        return answer
    if isinstance(answer, dict):
        return httpx.Response(200, json=answer)
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          content=_body(answer))  # fmt: skip
