"""A background heartbeat for a running stage, so a slow step never makes a live claim look dead."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from sqlalchemy.orm import Session, sessionmaker

from shared.db.claims import Claim, heartbeat

log = logging.getLogger(__name__)


class Heartbeat:
    """While in its `with` block, refresh the claim's heartbeat every `interval_s` seconds.

    It stops by itself once the claim is gone (the progress writer then stops the stage).
    A failed write is logged and tried again next beat: the database may be back by then.
    """

    def __init__(self, sessions: sessionmaker[Session], claim: Claim, *, interval_s: float) -> None:
        self._sessions = sessions
        self._claim = claim
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{claim.job_id}", daemon=True
        )
        self.beats = 0

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval_s + 5.0)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                with self._sessions.begin() as session:
                    alive = heartbeat(session, self._claim)
            except Exception:
                log.warning("job %s: heartbeat failed", self._claim.job_id, exc_info=True)
                continue
            self.beats += 1
            if not alive:
                return
