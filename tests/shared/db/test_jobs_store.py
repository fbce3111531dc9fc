"""API-side data access: create, list with cursors (ties on created_at too), cancel, images."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from shared.db import jobs as store
from shared.db.models import Job, JobImage
from shared.errors import Conflict, InvalidInput, NotFound
from shared.job_params import JobParams

NEW = store.NewJob(params=JobParams(prompt="p", n=2, size="64x64", seed=3))


def test_create_and_get(db_sessions: sessionmaker[Session]) -> None:
    with db_sessions.begin() as session:
        job = store.create_job(session=session, job_in=NEW, job_id="fixed-id")
    with db_sessions() as session:
        again = store.get_job(session=session, job_id="fixed-id")
        assert again.status == "queued" and again.n == 2 and again.attempt == 0
        assert again.created_at.tzinfo is UTC and again.created_at == job.created_at
        with pytest.raises(NotFound, match="'other'"):
            store.get_job(session=session, job_id="other")


def test_cursor_pages_cover_ties_exactly_once(db_sessions: sessionmaker[Session]) -> None:
    same = datetime(2026, 1, 1, tzinfo=UTC)
    with db_sessions.begin() as session:
        ids = [store.create_job(session=session, job_in=NEW).id for _ in range(7)]
        session.execute(update(Job).values(created_at=same))  # all tie on created_at
    seen: list[str] = []
    cursor = None
    with db_sessions() as session:
        while True:
            page = store.list_jobs(session=session, limit=3, cursor=cursor)
            seen += [job.id for job in page.jobs]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert seen == sorted(ids, reverse=True)
    with db_sessions() as session, pytest.raises(InvalidInput, match="cursor"):
        store.list_jobs(session=session, limit=3, cursor="%%%")


def test_cancel_running_job_and_conflict_when_done(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    running = make_job(status="decoder")
    done = make_job(status="succeeded")
    with db_sessions.begin() as session:
        assert store.cancel_job(session=session, job_id=running).status == "cancelled"
    with db_sessions() as session, pytest.raises(Conflict, match="succeeded"):
        store.cancel_job(session=session, job_id=done)


def test_images_for_job_hides_unpublished(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    job_id = make_job()
    with db_sessions.begin() as session:
        for index, published in ((1, True), (0, True), (2, False)):
            session.add(JobImage(job_id=job_id, index=index, attempt=1, storage_key=f"k{index}",
                                 width=8, height=8, published=published))  # fmt: skip
    with db_sessions() as session:
        assert [i.index for i in store.images_for_job(session=session, job_id=job_id)] == [0, 1]
        every = store.images_for_job(session=session, job_id=job_id, published_only=False)
        assert len(every) == 3
        with pytest.raises(NotFound):
            store.get_published_image(session=session, job_id=job_id, index=2)


def test_mark_enqueue_failed_only_from_queued(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    queued, moved = make_job(), make_job(status="prior")
    with db_sessions.begin() as session:
        assert store.mark_enqueue_failed(session=session, job_id=queued, message="down")
        assert not store.mark_enqueue_failed(session=session, job_id=moved, message="down")
    with db_sessions() as session:
        job = store.get_job(session=session, job_id=queued)
        assert (job.status, job.status_reason, job.error_message) == (
            "failed",
            "queue_unavailable",
            "down",
        )
