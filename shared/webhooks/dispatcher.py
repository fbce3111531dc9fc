"""The webhook dispatcher: sends due deliveries from the outbox, concurrently, and logs each try.

Up to CONCURRENCY attempts are in flight at once, at most PER_TARGET of them to one receiver
(host and port), so a slow or dead receiver holds a few slots for its timeout while every other
job's webhooks go out at once. A delivery is claimed only when a slot is free to send it, so
its lease starts as its attempt does.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait

import httpx
from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.models.webhook_delivery import WebhookDelivery
from shared.db.webhooks import claim_due, record_attempt
from shared.settings import Settings
from shared.webhooks.sender import ImageUrl, Resolve, Sender
from shared.webhooks.targets import resolve_host, target_of

log = logging.getLogger(__name__)
CONCURRENCY = 16
PER_TARGET = 4
# A claimed delivery is the dispatcher's for this long past the receiver's timeout.
LEASE_MARGIN_S = 30.0


class Dispatcher:
    """Sends webhook deliveries; several copies may run (deliveries are claimed first)."""

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        *,
        http: httpx.Client | None = None,
        image_url: ImageUrl | None = None,
        resolve: Resolve = resolve_host,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.sender = Sender(settings, http=http, image_url=image_url, resolve=resolve)
        self._pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="webhook")
        self._lock = threading.Lock()
        self._in_flight: dict[Future[None], str] = {}  # each attempt running, and its receiver

    def run_once(self) -> int:
        """Send what is due now (as slots allow) and wait for those; the number of attempts."""
        started = self._start_due()
        wait(started)
        return len(started)

    def run_forever(self, stop: threading.Event) -> None:
        """Dispatch until `stop` is set, then let the attempts in flight finish and be logged;
        a database hiccup is logged and tried again."""
        while not stop.is_set():
            try:
                started = self._start_due()
            except Exception:
                log.exception("webhook dispatch failed; trying again")
                started = []
            if not started:
                stop.wait(self.settings.webhooks.poll_interval_s)
        with self._lock:
            running = list(self._in_flight)
        wait(running)

    def close(self) -> None:
        """Wait for the attempts in flight, then release the threads and connections."""
        self._pool.shutdown(wait=True)
        self.sender.http.close()

    def _start_due(self) -> list[Future[None]]:
        """Claim as many due deliveries as there are free slots and start sending each."""
        with self._lock:
            busy = Counter(self._in_flight.values())
            free = CONCURRENCY - len(self._in_flight)
        if free <= 0:
            return []
        lease = self.settings.webhooks.timeout_s + LEASE_MARGIN_S
        with self.sessions.begin() as session:
            claimed = claim_due(session, now=utcnow(), limit=free, lease_s=lease,
                                per_target=PER_TARGET, busy=busy)  # fmt: skip
            session.expunge_all()
        started = []
        for delivery in claimed:
            future = self._pool.submit(self._deliver, delivery)
            with self._lock:
                self._in_flight[future] = target_of(delivery.url)
            future.add_done_callback(self._finished)
            started.append(future)
        return started

    def _finished(self, future: Future[None]) -> None:
        with self._lock:
            self._in_flight.pop(future, None)

    def _deliver(self, delivery: WebhookDelivery) -> None:
        """One attempt and its log entry (in a thread of the pool)."""
        try:
            outcome = self.sender.attempt(delivery)
            with self.sessions.begin() as session:
                held = record_attempt(session, delivery, outcome)
        except Exception:  # the claim's lease runs out and the delivery is due again
            log.exception("webhook %s attempt could not be made or logged", delivery.id)
            return
        log.info("webhook %s (%s, job %s) attempt %d: %s%s", delivery.id, delivery.event,
                 delivery.job_id, delivery.attempts + 1, outcome.status_code or outcome.error,
                 "" if held else " (its claim had lapsed)")  # fmt: skip
