"""Queue position, ETA and servability of waiting jobs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.models import Job, StageAttempt, Worker
from shared.db.queue_position import standing


def _queued(make_job: Callable[..., str], count: int) -> list[str]:
    start = utcnow() - timedelta(minutes=5)
    return [make_job(created_at=start + timedelta(seconds=i)) for i in range(count)]


def _worker(session: Session, queues: list[str], *, silent_s: float = 0) -> None:
    now = utcnow() - timedelta(seconds=silent_s)
    session.add(Worker(id=f"w{len(queues)}-{silent_s}", node="n", host="h", pid=1, queues=queues,
                       device="cpu", dtype="float32", family="f", started_at=now,
                       heartbeat_at=now))  # fmt: skip


def test_positions_count_the_jobs_ahead_and_move_when_one_starts(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    ids = _queued(make_job, 5)
    with db_sessions.begin() as session:
        _worker(session, ["prior", "decoder", "upsampler"])
    with db_sessions() as session:
        places = [standing(session, session.get_one(Job, i), stale_after_s=60) for i in ids]
    assert [p.queue_position for p in places if p] == [0, 1, 2, 3, 4]
    assert all(p and p.servable for p in places)
    etas = [p.eta_s for p in places if p]
    assert etas == sorted(etas) and etas[0] < etas[-1]

    with db_sessions.begin() as session:  # the first job is claimed: it no longer waits
        job = session.get_one(Job, ids[0])
        job.status, job.worker_id = "prior", "w:1"
    with db_sessions() as session:
        assert standing(session, session.get_one(Job, ids[0]), stale_after_s=60) is None
        moved = [standing(session, session.get_one(Job, i), stale_after_s=60) for i in ids[1:]]
    assert [p.queue_position for p in moved if p] == [0, 1, 2, 3]


def test_eta_uses_measured_stage_times(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    [first, second] = _queued(make_job, 2)
    done = make_job(status="succeeded")
    now = utcnow()
    with db_sessions.begin() as session:
        _worker(session, ["prior", "decoder", "upsampler"])
        for stage, seconds in (("prior", 2.0), ("decoder", 6.0), ("upsampler", 4.0)):
            session.add(StageAttempt(job_id=done, stage=stage, attempt=1, status="succeeded",
                                     started_at=now - timedelta(seconds=seconds),
                                     finished_at=now))  # fmt: skip
    with db_sessions() as session:
        a = standing(session, session.get_one(Job, first), stale_after_s=60)
        b = standing(session, session.get_one(Job, second), stale_after_s=60)
    assert a is not None and b is not None
    assert a.eta_s == 12.0  # its own three stages
    # One worker runs every stage: the job ahead's three stages come first.
    assert b.eta_s == 24.0


def _measured(session: Session, job_id: str) -> None:
    now = utcnow()
    for stage, seconds in (("prior", 2.0), ("decoder", 6.0), ("upsampler", 4.0)):
        session.add(StageAttempt(job_id=job_id, stage=stage, attempt=1, status="succeeded",
                                 started_at=now - timedelta(seconds=seconds),
                                 finished_at=now))  # fmt: skip


def test_a_worker_per_stage_only_counts_the_stage_queue_ahead(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    [first, second] = _queued(make_job, 2)
    done = make_job(status="succeeded")
    with db_sessions.begin() as session:
        for stage in ("prior", "decoder", "upsampler"):
            _worker(session, [stage], silent_s={"prior": 0, "decoder": 1, "upsampler": 2}[stage])
        _measured(session, done)
    with db_sessions() as session:
        b = standing(session, session.get_one(Job, second), stale_after_s=60)
    assert b is not None and b.eta_s == 14.0  # the prior of the job ahead, then its own


def test_a_shared_worker_counts_the_jobs_past_the_stage_too(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    [waiting] = _queued(make_job, 1)
    make_job(status="decoder")  # its prior done, waiting for the decoder: 6 + 4 s
    make_job(status="upsampler", worker_id="w:9")  # running: half its 4 s
    done = make_job(status="succeeded")
    with db_sessions.begin() as session:
        _worker(session, ["prior", "decoder", "upsampler"])
        _measured(session, done)
    with db_sessions() as session:
        place = standing(session, session.get_one(Job, waiting), stale_after_s=60)
    assert place is not None and place.queue_position == 0
    assert place.eta_s == 12.0 + 10.0 + 2.0


def test_a_queue_without_a_live_worker_is_not_servable(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    [job_id] = _queued(make_job, 1)
    with db_sessions.begin() as session:
        _worker(session, ["prior"])
        _worker(session, ["decoder", "upsampler"], silent_s=600)  # lost long ago
    with db_sessions() as session:
        place = standing(session, session.get_one(Job, job_id), stale_after_s=60)
    assert place is not None and not place.servable
    assert place.unservable_reason == "no live worker serves the decoder, upsampler queues"
