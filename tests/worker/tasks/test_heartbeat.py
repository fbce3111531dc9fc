"""The background heartbeat keeps a claim fresh during a long step and stops once it is lost."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.claims import claim_stage
from shared.db.models import Job
from worker.tasks.heartbeat import Heartbeat

Sessions = sessionmaker[Session]


def test_heartbeat_refreshes_until_the_claim_is_lost(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    long_ago = utcnow() - timedelta(hours=1)
    with db_sessions.begin() as session:
        claim = claim_stage(session, job_id=job_id, stage="prior", worker_id="w",
                            stale_after_s=60, max_attempts=3, now=long_ago)  # fmt: skip
    assert claim is not None
    with Heartbeat(db_sessions, claim, interval_s=0.05) as beat:
        deadline = time.monotonic() + 10
        while beat.beats < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        with db_sessions() as session:
            fresh = session.get_one(Job, job_id).heartbeat_at
        assert fresh is not None and fresh > utcnow() - timedelta(seconds=30)
        with db_sessions.begin() as session:
            session.get_one(Job, job_id).attempt = 5  # another worker took over
        time.sleep(0.5)
        beats_after_loss = beat.beats
        time.sleep(0.3)
        assert beat.beats == beats_after_loss  # it stopped beating for a claim it lost
