"""Following a job: events when the server streams them, polling when it does not, and a GET
that has the last word on whether the job is over."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
import typer

from shared.client.api_client import ApiError
from shared.client.commands import Kind, job_fields, parse_steps
from shared.client.follow import STAGES, TERMINAL, JobState, follow
from shared.client.reconnect import Reconnect
from tests.shared.client.fake_api import FakeApi, job


def _follow(api: FakeApi, **kwargs: Any) -> list[JobState]:
    kwargs.setdefault("sleep", lambda _: None)
    return list(follow(api.client(), "j1", **kwargs))


class FakeTime:
    """A clock that only moves when slept on, and the sleeps asked for."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, list[float]()

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def reconnect(self, notices: list[str], give_up_after_s: float = 45.0) -> Reconnect:
        return Reconnect(give_up_after_s=give_up_after_s, notify=notices.append,
                         sleep=self.sleep, clock=lambda: self.now)  # fmt: skip


def test_the_client_knows_the_servers_stages_and_terminal_events() -> None:
    from shared.db.job_events import TERMINAL_EVENTS
    from shared.db.states import STAGE_ORDER

    assert tuple(stage.value for stage in STAGE_ORDER) == STAGES
    assert frozenset(TERMINAL_EVENTS) == TERMINAL


def test_polls_when_the_server_has_no_event_stream() -> None:
    api = FakeApi(
        jobs=[job("queued"), job("prior", "prior", 2), job("decoder", "decoder", 1),
              job("succeeded")],
        streams=[httpx.Response(404, json={"error": {"message": "no such route"}})],
    )  # fmt: skip
    states = _follow(api)
    assert [(s.status, s.stage, s.step) for s in states] == [
        ("queued", None, None), ("prior", "prior", 2), ("decoder", "decoder", 1),
        ("succeeded", None, None),
    ]  # fmt: skip
    assert all(r.headers["authorization"] == "Bearer k" for r in api.requests)


def test_follows_server_sent_events_to_the_terminal_one() -> None:
    api = FakeApi(jobs=[job("queued"), job("succeeded")], streams=[[
        (1, "queued", {"queue_position": 2, "eta_s": 3.0}),
        (2, "started", {"stage": "prior"}),
        (3, "progress", {"stage": "prior", "step": 1, "steps": 2}),
        (4, "stage_done", {"stage": "prior", "steps": 2}),
        (5, "succeeded", {"images": []}),
    ]])  # fmt: skip
    states = _follow(api)
    assert states[1] == JobState("queued", queue_position=2, eta_s=3.0)
    assert states[3] == JobState("prior", stage="prior", step=1, steps=2)
    assert states[-1].status == "succeeded" and states[-1].terminal


def test_a_waiting_job_shows_its_polled_queue_position_and_eta() -> None:
    go = threading.Event()
    answers = [job("queued", queue_position=3, eta_s=30.0),
               job("queued", queue_position=2, eta_s=20.0),
               job("queued", queue_position=1, eta_s=10.0)]  # fmt: skip

    def job_answer(request: httpx.Request) -> httpx.Response:
        api.job_gets += 1
        if api.job_gets == len(answers):
            go.set()  # the job reaches the front and starts
        return httpx.Response(200, json=answers[min(api.job_gets, 3) - 1]
                              if api.job_gets <= 3 else job("succeeded"))  # fmt: skip

    api = FakeApi(jobs=[], streams=[[
        (1, "queued", {"job_id": "j1"}),  # as the server sends it: no position, no ETA
        go, (2, "started", {"stage": "prior", "steps": 4}), (3, "succeeded", {}),
    ]])  # fmt: skip
    api.routes[("GET", "/v1/jobs/j1")] = job_answer
    states = _follow(api, refresh_s=0.01)
    queued = [(s.queue_position, s.eta_s) for s in states if s.status == "queued"]
    assert queued == [(3, 30.0), (2, 20.0), (1, 10.0)]
    assert [s.status for s in states][-2:] == ["prior", "succeeded"]


def test_an_old_held_event_does_not_end_the_follow_of_a_released_job() -> None:
    # An older server closes the stream at the first terminal-looking event of the history:
    # here `held`, although a reviewer released the job, which now runs on.
    api = FakeApi(
        jobs=[job("prior", "prior", 1), job("decoder", "decoder"), job("decoder", "decoder"),
              job("succeeded")],
        streams=[
            [(1, "queued", {}), (2, "started", {"stage": "prior"}), (3, "held", {})],
            [(6, "started", {"stage": "decoder", "steps": 4}), (7, "succeeded", {})],
        ],
    )  # fmt: skip
    states = _follow(api)
    assert "held" not in [s.status for s in states]
    assert [s.status for s in states] == ["prior", "decoder", "decoder", "succeeded"]
    resumed = api.event_requests()[1]
    assert resumed.headers["last-event-id"] == "3"


def test_a_replayed_history_is_not_shown_as_the_jobs_state() -> None:
    # The job was held, released and is now at the upsampler; its stream starts at event 1.
    history = [
        (1, "queued", {}), (2, "started", {"stage": "prior"}), (3, "held", {}),
        (4, "queued", {}), (5, "started", {"stage": "prior"}),
        (6, "stage_done", {"stage": "prior", "steps": 4}),
        (7, "started", {"stage": "decoder"}), (8, "stage_done", {"stage": "decoder", "steps": 4}),
        (9, "started", {"stage": "upsampler", "steps": 4}),
        (10, "progress", {"stage": "upsampler", "step": 1, "steps": 4}),
        (11, "progress", {"stage": "upsampler", "step": 2, "steps": 4}),
        (12, "succeeded", {}),
    ]  # fmt: skip
    api = FakeApi(jobs=[job("upsampler", "upsampler", 1), job("upsampler", "upsampler", 2),
                        job("succeeded")], streams=[history])  # fmt: skip
    states = _follow(api, refresh_s=5.0)
    assert [(s.status, s.step) for s in states] == [
        ("upsampler", 1),
        ("upsampler", 2),
        ("succeeded", None),
    ]


def test_a_terminal_event_is_the_end_when_the_job_agrees() -> None:
    api = FakeApi(jobs=[job("prior", "prior", 1), job("held", "prior", status_reason="x")],
                  streams=[[(1, "started", {"stage": "prior"}), (2, "held", {})]])  # fmt: skip
    states = _follow(api)
    assert states[-1].status == "held" and states[-1].terminal
    assert len(api.event_requests()) == 1


def test_a_broken_stream_is_resumed_after_the_last_event_seen() -> None:
    clock, notices = FakeTime(), list[str]()
    api = FakeApi(jobs=[job("queued"), job("succeeded")], streams=[
        [(1, "queued", {}), (2, "started", {"stage": "prior", "steps": 4}),
         httpx.ReadError("connection reset by peer")],
        httpx.ConnectError("[Errno 111] Connection refused"),  # the API restarting
        httpx.Response(503, json={"error": {"message": "database unavailable"}}),
        [(3, "progress", {"stage": "prior", "step": 4, "steps": 4}), (4, "succeeded", {})],
    ])  # fmt: skip
    states = _follow(api, reconnect=clock.reconnect(notices))
    assert [(s.status, s.step) for s in states][-2:] == [("prior", 4), ("succeeded", None)]
    assert [r.headers.get("last-event-id") for r in api.event_requests()] == [None, "2", "2", "2"]
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert len(notices) == 1 and "reconnecting" in notices[0]


def test_polling_rides_out_a_restart_too() -> None:
    clock, notices = FakeTime(), list[str]()
    api = FakeApi(
        jobs=[job("queued"), httpx.ConnectError("refused"),
              httpx.Response(502, text="Bad Gateway"), job("succeeded")],
        streams=[httpx.Response(404, json={"error": {"message": "no such route"}})],
    )  # fmt: skip
    states = _follow(api, reconnect=clock.reconnect(notices))
    assert [s.status for s in states] == ["queued", "succeeded"]
    assert len(notices) == 1


def test_gives_up_reconnecting_with_the_error_after_a_while() -> None:
    clock, notices = FakeTime(), list[str]()
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    api = FakeApi(jobs=[job("queued"), refused], streams=[refused] * 20)
    with pytest.raises(ApiError, match="gave up after 12 s") as caught:
        _follow(api, reconnect=clock.reconnect(notices, give_up_after_s=10.0))
    assert "Connection refused" in str(caught.value) and caught.value.transient
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert len(notices) == 1


def test_a_lasting_error_is_not_retried() -> None:
    clock = FakeTime()
    api = FakeApi(jobs=[job("queued"), httpx.Response(404, json={"error": {
        "message": "no job 'j1'"}})], streams=[httpx.Response(404, json={})])  # fmt: skip
    with pytest.raises(ApiError, match="no job") as caught:
        _follow(api, reconnect=clock.reconnect([]))
    assert caught.value.status == 404 and clock.sleeps == []


def test_server_errors_carry_the_message_and_status() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "size '7x7' is not allowed",
                                                   "code": None}})  # fmt: skip

    api = FakeApi(jobs=[])
    api.routes[("POST", "/v1/jobs")] = handler
    with pytest.raises(ApiError) as caught:
        api.client().submit({"kind": "generate"})
    assert caught.value.status == 400 and "7x7" in str(caught.value)


def test_job_fields_and_steps() -> None:
    assert parse_steps("10,10,4") == {"prior": 10, "decoder": 10, "upsampler": 4}
    with pytest.raises(typer.BadParameter, match="P,D,U"):
        parse_steps("10,10")
    fields = job_fields(Kind.generate, "a red circle", None, None, 2, "64x64", 3, "2,2,2")
    assert fields == {"kind": "generate", "prompt": "a red circle", "n": 2, "size": "64x64",
                      "seed": 3, "steps": {"prior": 2, "decoder": 2, "upsampler": 2}}  # fmt: skip
