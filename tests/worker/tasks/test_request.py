"""The worker main process's side: a dead attempt's claim is released at once, and counts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.claims import claim_stage, count_stage_attempts
from shared.db.models import Job, StageAttempt
from shared.settings import Settings
from worker.tasks import request

Sessions = sessionmaker[Session]


def test_release_attempt_frees_only_the_dead_workers_claim(
    sqlite_settings: Settings,
    db_sessions: Sessions,
    make_job: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(request, "get_settings", lambda: sqlite_settings)
    job_id = make_job()
    with db_sessions.begin() as session:
        claim = claim_stage(session, job_id=job_id, stage="prior", worker_id="node@h:41",
                            stale_after_s=600, max_attempts=3)  # fmt: skip
    assert claim is not None
    # Another process of the node (or another stage) is not the dead one.
    assert not request.release_attempt(job_id, "prior", "node@h:42", "worker_lost: SIGKILL")
    assert not request.release_attempt(job_id, "decoder", "node@h:41", "worker_lost: SIGKILL")
    assert request.release_attempt(job_id, "prior", "node@h:41", "worker_lost: SIGKILL")
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
        attempt = session.scalars(select(StageAttempt).where(StageAttempt.job_id == job_id)).one()
        assert (job.status, job.worker_id) == ("prior", None)  # claimable by the redelivery now
        assert (attempt.status, attempt.error) == ("lost", "worker_lost: SIGKILL")
        assert count_stage_attempts(session, job_id=job_id, stage="prior") == 1  # it counts
    assert not request.release_attempt(job_id, "prior", "node@h:41", "again")  # once only
