"""Job transitions are single conditional UPDATEs: the second mover from the same state loses."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import make_sessionmaker
from shared.db.models import Job
from shared.db.states import TERMINAL, TRANSITIONS, JobStatus, check_transition, transition
from shared.errors import InvalidTransition


def test_second_transition_from_the_same_state_fails(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    with db_sessions.begin() as session:
        assert transition(session, job_id, [JobStatus.queued], JobStatus.prior, worker_id="w1")
    with db_sessions.begin() as session:
        assert not transition(session, job_id, [JobStatus.queued], JobStatus.prior, worker_id="w2")
    with db_sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "prior" and job.worker_id == "w1"
        assert job.started_at is not None and job.finished_at is None


def test_started_at_is_kept_and_terminal_sets_finished(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    with db_sessions.begin() as session:
        transition(session, job_id, JobStatus.queued, JobStatus.prior)
    with db_sessions() as session:
        first_start = session.get(Job, job_id).started_at  # type: ignore[union-attr]
    with db_sessions.begin() as session:
        transition(session, job_id, JobStatus.prior, JobStatus.decoder)
        job = session.get(Job, job_id)
        assert job is not None  # a loaded object is refreshed after the UPDATE
        transition(session, job_id, JobStatus.decoder, JobStatus.failed, error_code="boom")
        assert job.status == "failed" and job.error_code == "boom"
        assert job.started_at == first_start and job.finished_at is not None


def test_unknown_job_changes_nothing(db_sessions: sessionmaker[Session]) -> None:
    with db_sessions.begin() as session:
        assert not transition(session, "no-such-job", JobStatus.queued, JobStatus.cancelled)


@pytest.mark.parametrize("terminal", sorted(TERMINAL - {JobStatus.rejected}))
def test_terminal_states_are_final_but_for_expiry(terminal: JobStatus) -> None:
    # A finished job only ever moves on to expired (retention, or its owner's DELETE).
    assert TRANSITIONS[terminal] == frozenset({JobStatus.expired})
    with pytest.raises(InvalidTransition, match=r"may go to \['expired'\]"):
        check_transition(terminal, JobStatus.queued)
    assert TRANSITIONS[JobStatus.expired] == frozenset()
    with pytest.raises(InvalidTransition, match="nothing"):
        check_transition(JobStatus.expired, terminal)


def test_a_rejected_job_can_only_be_released_by_an_upheld_appeal_or_expire() -> None:
    assert TRANSITIONS[JobStatus.rejected] == {JobStatus.queued, JobStatus.succeeded,
                                               JobStatus.expired}  # fmt: skip
    with pytest.raises(InvalidTransition):
        check_transition(JobStatus.rejected, JobStatus.prior)


def test_disallowed_transition_names_what_is_allowed(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    with db_sessions.begin() as session, pytest.raises(InvalidTransition, match="go to .*prior"):
        transition(session, job_id, JobStatus.queued, JobStatus.upsampler)
    with pytest.raises(InvalidTransition, match="statuses are"):
        check_transition("queued", "exploded")


@pytest.mark.integration
def test_concurrent_claims_on_postgres_let_exactly_one_win(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        job = Job(
            kind="generate", prompt="p", n=1, size="64x64", seed=1, sampler="ddim",
            steps_prior=1, steps_decoder=1, steps_upsampler=1, prior_guidance=1.0,
            decoder_guidance=1.0, status="queued", attempt=0,
        )  # fmt: skip
        session.add(job)
        session.flush()
        job_id = job.id
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def claim(worker: str) -> None:
        barrier.wait()
        with sessions.begin() as session:
            wins.append(transition(session, job_id, JobStatus.queued, JobStatus.prior,
                                   worker_id=worker))  # fmt: skip

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    assert sorted(wins) == [False] * 7 + [True]
