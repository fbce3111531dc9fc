"""A slow or dead receiver does not hold up other jobs' webhooks: attempts run concurrently,
a few slots per receiver, and new deliveries go out while a slow one waits for its answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.job_events import record_event
from shared.db.webhooks import deliveries_for_job
from shared.settings import Settings, Webhooks
from shared.webhooks.dispatcher import PER_TARGET, Dispatcher


def _delivery(sessions: sessionmaker[Session], make_job: Callable[..., str], url: str) -> str:
    job_id = make_job(webhook_url=url)
    with sessions.begin() as session:
        record_event(session, job_id, "failed", {"code": "x"})
    return job_id


def _status(sessions: sessionmaker[Session], job_id: str) -> str:
    with sessions() as session:
        [(delivery, _)] = deliveries_for_job(session, job_id)
    return delivery.status


def _eventually(check: Callable[[], bool], within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


class Gate:
    """A mocked transport: slow.example hangs until released (then times out), others answer."""

    def __init__(self) -> None:
        self.release, self.lock = threading.Event(), threading.Lock()
        self.waiting = self.most_waiting = 0
        self.answered: list[str] = []
        self.client = httpx.Client(transport=httpx.MockTransport(self.handle))

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != "slow.example":
            with self.lock:
                self.answered.append(request.url.host)
            return httpx.Response(200)
        with self.lock:
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
        self.release.wait(10)
        with self.lock:
            self.waiting -= 1
        raise httpx.ReadTimeout("the receiver did not answer", request=request)


def test_a_healthy_receiver_is_not_kept_waiting_by_a_slow_one(
    sqlite_settings: Settings, db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    slow = _delivery(db_sessions, make_job, "https://slow.example/hook")  # due first
    fast = _delivery(db_sessions, make_job, "https://fast.example/hook")
    gate = Gate()
    dispatcher = Dispatcher(sqlite_settings, db_sessions, http=gate.client)
    sending = threading.Thread(target=dispatcher.run_once)
    sending.start()
    try:
        assert _eventually(lambda: _status(db_sessions, fast) == "delivered")
        assert _status(db_sessions, slow) == "sending" and gate.waiting == 1
    finally:
        gate.release.set()
        sending.join(10)
    assert _status(db_sessions, slow) == "pending"  # its timeout is an ordinary failed try


@pytest.fixture
def sleepy_receiver() -> Iterator[Callable[[float], str]]:
    """A local receiver: /slow sleeps the given seconds before answering, /fast answers."""
    servers: list[ThreadingHTTPServer] = []

    def _start(sleep_s: float) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers["content-length"]))
                if self.path == "/slow":
                    time.sleep(sleep_s)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return None

        servers.append(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        threading.Thread(target=servers[-1].serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{servers[-1].server_address[1]}"

    yield _start
    for server in servers:
        server.shutdown()


def test_real_receivers_past_their_timeout_cost_others_no_wait(
    sqlite_settings: Settings, db_sessions: sessionmaker[Session],
    make_job: Callable[..., str], sleepy_receiver: Callable[[float], str],
) -> None:  # fmt: skip
    timeout_s = 0.5
    settings = sqlite_settings.model_copy(update={"webhooks": Webhooks(timeout_s=timeout_s)})
    base = sleepy_receiver(timeout_s * 2)
    slow = [_delivery(db_sessions, make_job, f"{base}/slow") for _ in range(3)]
    fast = _delivery(db_sessions, make_job, f"{base}/fast")  # due last of the four
    dispatcher = Dispatcher(settings, db_sessions)
    began, clock = utcnow(), time.monotonic()
    assert dispatcher.run_once() == 4
    assert time.monotonic() - clock < 2.4 * timeout_s  # one after another: over 3 timeouts
    with db_sessions() as session:
        [(delivery, [attempt])] = deliveries_for_job(session, fast)
        slow_logs = [deliveries_for_job(session, job_id)[0] for job_id in slow]
    assert delivery.status == "delivered"
    assert (attempt.started_at - began).total_seconds() < timeout_s  # not after a slow one
    for slow_delivery, [slow_attempt] in slow_logs:
        assert slow_delivery.status == "pending"
        assert slow_attempt.error is not None and "ReadTimeout" in slow_attempt.error


def test_a_slow_receiver_gets_a_few_slots_and_new_deliveries_go_out_beside_it(
    sqlite_settings: Settings, db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    settings = sqlite_settings.model_copy(update={"webhooks": Webhooks(poll_interval_s=0.02)})
    slow = [_delivery(db_sessions, make_job, f"https://slow.example/{i}") for i in range(6)]
    gate = Gate()
    dispatcher = Dispatcher(settings, db_sessions, http=gate.client)
    stop = threading.Event()
    running = threading.Thread(target=dispatcher.run_forever, args=(stop,))
    running.start()
    try:
        assert _eventually(lambda: gate.waiting == PER_TARGET)
        time.sleep(0.1)  # several polls: the other two stay unclaimed
        assert gate.waiting == PER_TARGET
        later = _delivery(db_sessions, make_job, "https://fast.example/hook")
        assert _eventually(lambda: _status(db_sessions, later) == "delivered")
        assert gate.waiting == PER_TARGET and gate.answered == ["fast.example"]
        gate.release.set()  # the four time out; the other two get their slots
        assert _eventually(lambda: all(_status(db_sessions, j) == "pending" for j in slow))
    finally:
        gate.release.set()
        stop.set()
        running.join(10)
    assert not running.is_alive() and gate.most_waiting == PER_TARGET
    dispatcher.close()
