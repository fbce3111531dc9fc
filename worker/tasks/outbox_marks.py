"""Outbox messages a worker published, marked published in its next transaction.

A stage commits its next stage's message in the outbox (shared/db/outbox.py), publishes it
after the commit, then marks it published. Marking it in a transaction of its own cost one
commit per stage hop; here the mark rides on the worker's next transaction instead (the claim
of the next message, which normally follows within milliseconds), or is written by a timer
FLUSH_AFTER_S after the publish when no transaction came. Either way that is well inside the
sweeper's PUBLISH_GRACE_S, which it leaves a message's own publisher before publishing it
again. A mark that is lost (its transaction rolled back, the process died) only makes the
sweeper publish the message once more, and a duplicate message is a no-op for the claim.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from shared.db.outbox import mark_published

log = logging.getLogger(__name__)

FLUSH_AFTER_S = 1.0


class PublishedMarks:
    """The ids of messages this process published and has not yet marked."""

    def __init__(self, flush_after_s: float = FLUSH_AFTER_S) -> None:
        self._flush_after_s = flush_after_s
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._timer: threading.Timer | None = None

    def add(self, sessions: sessionmaker[Session], message_id: str) -> None:
        """Remember a published message; a timer marks it if no transaction does first."""
        with self._lock:
            self._pending.append(message_id)
            if self._timer is None:
                self._timer = threading.Timer(self._flush_after_s, self.flush, args=(sessions,))
                self._timer.daemon = True
                self._timer.start()

    def mark_in(self, session: Session) -> int:
        """Mark every pending message in the caller's transaction; how many were pending."""
        with self._lock:
            pending, self._pending = self._pending, []
        for message_id in pending:
            mark_published(session, message_id)
        return len(pending)

    def flush(self, sessions: sessionmaker[Session]) -> None:
        """(The timer) mark what no transaction marked; the sweeper covers a failure."""
        with self._lock:
            self._timer = None
        try:
            with sessions.begin() as session:
                self.mark_in(session)
        except Exception:
            log.warning("could not mark published outbox messages; the sweeper publishes "
                        "them again", exc_info=True)  # fmt: skip

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)
