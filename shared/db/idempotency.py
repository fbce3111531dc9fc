"""Idempotency-Key records (draft-ietf-httpapi-idempotency-key-header), kept 24 hours.

The unique (scope, key) index decides which request is first: each request INSERTs its
record and the losers catch the IntegrityError, never check-then-insert. The scope is never
NULL (a key's id, or "local"), so the index applies to every request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db.base import new_id
from shared.db.models import IdempotencyRecord
from shared.errors import Conflict, UnprocessableInput

TTL = timedelta(hours=24)
# An in-flight record this old belongs to a request that died; a retry may take it over.
STALE_IN_FLIGHT = timedelta(minutes=2)
MAX_CLAIM_TRIES = 5


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key: ours to use (`record_id`), or an earlier `job_id`."""

    record_id: str | None = None
    job_id: str | None = None


class KeyInFlight(Conflict):
    """The first request with this key has not finished yet (HTTP 409)."""

    code = "idempotency_key_in_use"


def _is_dead(record: IdempotencyRecord, now: datetime) -> bool:
    stale = record.job_id is None and record.created_at <= now - STALE_IN_FLIGHT
    return record.expires_at <= now or stale


def _check_earlier(record: IdempotencyRecord, key: str, fingerprint: str) -> Claim:
    if record.fingerprint != fingerprint:
        raise UnprocessableInput(
            f"Idempotency-Key {key!r} was already used with a different request body; send "
            "the same body to get the first answer, or use a new key for a new request",
            param="Idempotency-Key",
            code="idempotency_key_mismatch",
        )
    if record.job_id is None:
        raise KeyInFlight(
            f"the first request with Idempotency-Key {key!r} is still being processed; "
            "retry shortly for its answer",
            param="Idempotency-Key",
        )
    return Claim(job_id=record.job_id)


def claim_key(*, session: Session, scope: str, key: str, fingerprint: str, now: datetime) -> Claim:
    """Insert our record and COMMIT it, or answer from the earlier one.

    Raises UnprocessableInput (another body, 422) or KeyInFlight (409). Rolls the session
    back on a lost race, so pass a session with nothing else pending.
    """
    for _ in range(MAX_CLAIM_TRIES):
        session.execute(  # expired and abandoned records of this scope stop counting
            delete(IdempotencyRecord).where(
                IdempotencyRecord.scope == scope,
                or_(
                    IdempotencyRecord.expires_at <= now,
                    and_(
                        IdempotencyRecord.job_id.is_(None),
                        IdempotencyRecord.created_at <= now - STALE_IN_FLIGHT,
                    ),
                ),
            )
        )
        record_id = new_id()
        session.add(
            IdempotencyRecord(
                id=record_id, scope=scope, key=key, fingerprint=fingerprint,
                created_at=now, expires_at=now + TTL,
            )
        )  # fmt: skip
        try:
            session.commit()
            return Claim(record_id=record_id)
        except IntegrityError:
            session.rollback()
        earlier = find_record(session=session, scope=scope, key=key)
        if earlier is not None and not _is_dead(earlier, now):
            return _check_earlier(earlier, key, fingerprint)
        session.rollback()  # gone or dead meanwhile: try the insert again
    raise KeyInFlight(f"Idempotency-Key {key!r} is contended; retry", param="Idempotency-Key")


def find_record(*, session: Session, scope: str, key: str) -> IdempotencyRecord | None:
    """The record of `key` in `scope`, read fresh from the database."""
    query = (
        select(IdempotencyRecord)
        .where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)
        .execution_options(populate_existing=True)
    )
    return session.execute(query).scalars().first()


def answer_for(*, session: Session, scope: str, key: str, fingerprint: str) -> Claim | None:
    """The earlier answer if the record now has one (None if it vanished); may raise as
    claim_key does."""
    record = find_record(session=session, scope=scope, key=key)
    return None if record is None else _check_earlier(record, key, fingerprint)


def attach_job(*, session: Session, record_id: str, job_id: str) -> None:
    """Point our record at the job it made (in the transaction that inserts the job)."""
    session.execute(
        update(IdempotencyRecord).where(IdempotencyRecord.id == record_id).values(job_id=job_id)
    )


def release_key(*, session: Session, record_id: str) -> None:
    """Forget our record: the request failed, so a retry with the key may try afresh."""
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))


def delete_expired(*, session: Session, now: datetime) -> int:
    """Delete every expired record (all scopes); the number deleted."""
    statement = delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now)
    result = cast(CursorResult[Any], session.execute(statement))
    return result.rowcount or 0
