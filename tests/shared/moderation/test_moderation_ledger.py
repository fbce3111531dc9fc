"""The verdict ledger: rows are written, and the database refuses to update or delete them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from shared.db import verdicts as ledger
from shared.db.engine import engine_for_url, make_sessionmaker
from shared.db.models import Job, JobImage, ModerationReview, ModerationVerdict
from shared.errors import Conflict
from shared.moderation.lexical import LexicalChecker
from shared.moderation.policy import load_policy

DEFAULT = Path(__file__).resolve().parents[3] / "policies" / "default.yaml"


def _job(session: Session, status: str = "held", n: int = 1) -> Job:
    job = Job(kind="generate", prompt="gore", n=n, size="64x64", seed=1, sampler="ddim",
              steps_prior=1, steps_decoder=1, steps_upsampler=1, prior_guidance=1.0,
              decoder_guidance=1.0, status=status, attempt=1)  # fmt: skip
    session.add(job)
    session.flush()
    return job


def _assert_append_only(factory: sessionmaker[Session]) -> None:
    verdict = LexicalChecker(load_policy(DEFAULT)).check("gas the jews")
    with factory.begin() as session:
        job = _job(session)
        row = ledger.record_verdict(session=session, job_id=job.id, verdict=verdict)
        ledger.review_job(
            session=session, job_id=job.id, action="confirm", reason="gore", reviewer="alice"
        )
        verdict_id, job_id = row.id, job.id
    with factory() as session:
        stored = session.get(ModerationVerdict, verdict_id)
        assert stored is not None and stored.decision == "block"
        assert stored.scores["hate"] == 1.0
        assert stored.policy_version == verdict.policy_version
        assert stored.matched_terms[0]["category"] == "hate"
        assert "gas the jews" in stored.matched_terms[0]["terms"]
    statements = [
        update(ModerationVerdict)
        .where(ModerationVerdict.id == verdict_id)
        .values(decision="allow"),
        delete(ModerationVerdict).where(ModerationVerdict.id == verdict_id),
        update(ModerationReview).where(ModerationReview.job_id == job_id).values(reason="edited"),
        delete(ModerationReview).where(ModerationReview.job_id == job_id),
    ]
    for statement in statements:
        with factory() as session, pytest.raises(DBAPIError, match="append-only"):
            session.execute(statement)
            session.commit()
    with factory() as session:
        stored = session.get(ModerationVerdict, verdict_id)
        assert stored is not None and stored.decision == "block"
        assert len(ledger.reviews_for_jobs(session=session, job_ids=[job_id])[job_id]) == 1


def test_sqlite_ledger_rows_cannot_be_updated_or_deleted(
    db_sessions: sessionmaker[Session],
) -> None:
    _assert_append_only(db_sessions)


@pytest.mark.integration
def test_postgres_ledger_rows_cannot_be_updated_deleted_or_truncated(postgres_url: str) -> None:
    engine = engine_for_url(postgres_url)
    try:
        factory = make_sessionmaker(engine)
        _assert_append_only(factory)
        with factory() as session, pytest.raises(DBAPIError, match="append-only"):
            session.execute(text("TRUNCATE moderation_verdicts CASCADE"))
    finally:
        engine.dispose()


def test_release_of_a_held_job_publishes_its_images(db_sessions: sessionmaker[Session]) -> None:
    with db_sessions.begin() as session:
        job = _job(session, n=2)
        for index in range(2):
            session.add(
                JobImage(
                    job_id=job.id,
                    index=index,
                    attempt=1,
                    storage_key=f"k{index}",
                    width=64,
                    height=64,
                    published=False,
                )
            )
        outcome = ledger.review_job(
            session=session,
            job_id=job.id,
            action="release",
            reason="a false positive",
            reviewer="bob",
        )
        assert outcome.published == 2 and not outcome.requeue
        assert outcome.job.status == "succeeded"
        assert outcome.job.status_reason == ledger.RELEASED_BY_REVIEW
        assert ledger.has_release(session=session, job_id=job.id)


def test_release_before_rendering_requeues_and_a_block_cannot_be_released(
    db_sessions: sessionmaker[Session],
) -> None:
    with db_sessions.begin() as session:
        held, rejected = _job(session), _job(session, status="rejected")
        outcome = ledger.review_job(
            session=session, job_id=held.id, action="release", reason="ok", reviewer="bob"
        )
        assert outcome.requeue and outcome.job.status == "queued"
        with pytest.raises(Conflict, match="only held jobs can be released"):
            ledger.review_job(
                session=session, job_id=rejected.id, action="release", reason="x", reviewer="bob"
            )
        listed = ledger.list_moderated_jobs(session=session)
        assert [j.id for j in listed] == [rejected.id]


def test_cancel_queued_for_key_cancels_only_that_keys_waiting_jobs(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    from shared.db.enforcement import cancel_queued_for_key
    from shared.db.models import ApiKey

    with db_sessions.begin() as session:
        key = ApiKey(name="k", key_hash="h" * 64, prefix="p")
        session.add(key)
        session.flush()
        key_id = key.id
    mine = make_job(api_key_id=key_id)
    running = make_job(api_key_id=key_id, status="prior", worker_id="w1")
    # Its prior done, waiting for a decoder worker: as much "in the queue" as a queued one.
    between = make_job(api_key_id=key_id, status="decoder")
    other = make_job()
    with db_sessions.begin() as session:
        assert sorted(cancel_queued_for_key(session=session, api_key_id=key_id)) == sorted(
            [mine, between]
        )
    with db_sessions() as session:
        statuses = {j: session.get(Job, j).status  # type: ignore[union-attr]
                    for j in (mine, running, between, other)}  # fmt: skip
    assert statuses == {mine: "cancelled", running: "prior", between: "cancelled",
                        other: "queued"}  # fmt: skip
