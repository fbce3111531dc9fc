"""Following a job: events when the server streams them, polling when it does not."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import typer

from shared.client.api_client import ApiClient, ApiError
from shared.client.commands import Kind, job_fields, parse_steps
from shared.client.follow import JobState, follow


def _job(status: str, stage: str | None = None, step: int | None = None) -> dict[str, Any]:
    return {"id": "j1", "status": status, "stage": stage, "progress_step": step,
            "progress_total": 4 if stage else None,
            "steps": {"prior": 4, "decoder": 4, "upsampler": 4}}  # fmt: skip


def _client(handler: Any) -> ApiClient:
    return ApiClient("http://test", "k", transport=httpx.MockTransport(handler))


def test_polls_when_the_server_has_no_event_stream() -> None:
    answers = iter([_job("queued"), _job("prior", "prior", 2), _job("decoder", "decoder", 1),
                    _job("succeeded")])  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer k"
        if request.url.path.endswith("/events"):
            return httpx.Response(404, json={"error": {"message": "no such route"}})
        return httpx.Response(200, json=next(answers))

    states = list(follow(_client(handler), "j1", sleep=lambda _: None))
    assert [(s.status, s.stage, s.step) for s in states] == [
        ("queued", None, None), ("prior", "prior", 2), ("decoder", "decoder", 1),
        ("succeeded", None, None),
    ]  # fmt: skip


def test_follows_server_sent_events_to_the_terminal_one() -> None:
    events = [
        ("queued", {"queue_position": 2, "eta_s": 3.0}),
        ("started", {"stage": "prior"}),
        ("progress", {"stage": "prior", "step": 1, "steps": 2}),
        ("stage_done", {"stage": "prior", "steps": 2}),
        ("succeeded", {"images": []}),
    ]
    body = "".join(f"id: {i}\nevent: {name}\ndata: {json.dumps(data)}\n\n"
                   for i, (name, data) in enumerate(events))  # fmt: skip

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
        return httpx.Response(200, json=_job("queued"))

    states = list(follow(_client(handler), "j1"))
    assert states[1] == JobState("queued", queue_position=2, eta_s=3.0)
    assert states[3] == JobState("prior", stage="prior", step=1, steps=2)
    assert states[-1].status == "succeeded" and states[-1].terminal


def test_server_errors_carry_the_message_and_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "size '7x7' is not allowed",
                                                   "code": None}})  # fmt: skip

    with pytest.raises(ApiError) as caught:
        _client(handler).submit({"kind": "generate"})
    assert caught.value.status == 400 and "7x7" in str(caught.value)


def test_job_fields_and_steps() -> None:
    assert parse_steps("10,10,4") == {"prior": 10, "decoder": 10, "upsampler": 4}
    with pytest.raises(typer.BadParameter, match="P,D,U"):
        parse_steps("10,10")
    fields = job_fields(Kind.generate, "a red circle", None, None, 2, "64x64", 3, "2,2,2")
    assert fields == {"kind": "generate", "prompt": "a red circle", "n": 2, "size": "64x64",
                      "seed": 3, "steps": {"prior": 2, "decoder": 2, "upsampler": 2}}  # fmt: skip
