"""Data access for API keys: create (the secret is returned once), find by hash, list, revoke."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.db.base import utcnow
from shared.db.models import ApiKey
from shared.db.models.api_key import NAME_LENGTH
from shared.errors import Conflict, InvalidInput, NotFound

KEY_PREFIX = "sk-unclip-"
SHOWN_PREFIX_CHARS = 14  # "sk-unclip-" and four random characters: enough to tell keys apart


@dataclass(frozen=True)
class NewKey:
    """A key just created: the row, and the plain secret that is never stored or shown again."""

    row: ApiKey
    secret: str


def hash_api_key(server_secret: str, key: str) -> str:
    """HMAC-SHA256(server_secret, key) in hex: what the api_keys table stores."""
    return hmac.new(server_secret.encode(), key.encode(), hashlib.sha256).hexdigest()


def create_key(
    *,
    session: Session,
    server_secret: str,
    name: str,
    rpm: int | None = None,
    max_active_jobs: int | None = None,
    is_admin: bool = False,
) -> NewKey:
    """Add a key (flushed, not committed); Conflict if the name is taken (the unique index
    decides a race, and the session is then rolled back)."""
    if not name or len(name) > NAME_LENGTH or not name.isprintable():
        raise InvalidInput(
            f"key name {name!r} must be 1-{NAME_LENGTH} printable characters", param="name"
        )
    for field, value in (("rpm", rpm), ("max_active_jobs", max_active_jobs)):
        if value is not None and value < 1:
            raise InvalidInput(f"{field}={value} must be at least 1 (or left out)", param=field)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        key_hash=hash_api_key(server_secret, secret),
        prefix=secret[:SHOWN_PREFIX_CHARS],
        rpm=rpm,
        max_active_jobs=max_active_jobs,
        is_admin=is_admin,
    )
    if session.scalars(select(ApiKey.id).where(ApiKey.name == name)).first() is not None:
        raise Conflict(f"a key named {name!r} already exists; pick another name", param="name")
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # the same name, created meanwhile by someone else
        session.rollback()
        raise Conflict(f"a key named {name!r} already exists; pick another name") from exc
    return NewKey(row=row, secret=secret)


def find_key(*, session: Session, server_secret: str, key: str) -> ApiKey | None:
    """The key row whose hash matches `key` (revoked or not), compared in constant time."""
    digest = hash_api_key(server_secret, key)
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).one_or_none()
    # The lookup is by an HMAC the caller cannot steer; compare_digest keeps the final check
    # free of early exits all the same.
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return row


def list_keys(*, session: Session, include_revoked: bool = True) -> list[ApiKey]:
    """Keys, oldest first."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def get_key_by_name(*, session: Session, name: str) -> ApiKey:
    """The key called `name`; NotFound names the keys there are."""
    row = session.scalars(select(ApiKey).where(ApiKey.name == name)).one_or_none()
    if row is None:
        names = [key.name for key in list_keys(session=session)]
        raise NotFound(f"no API key named {name!r}; keys: {names}", param="name")
    return row


def revoke_key(*, session: Session, name: str) -> ApiKey:
    """Revoke the key called `name` (idempotent: a revoked key keeps its first revoked_at)."""
    row = get_key_by_name(session=session, name=name)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def suspend_key(*, session: Session, key_id: str, reason: str) -> ApiKey:
    """Suspend a key (moderation): it answers 401 key_suspended until unsuspended."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key with id {key_id!r}", param="key_id")
    row.suspended_at = utcnow()
    row.suspended_reason = reason
    session.flush()
    return row


def unsuspend_key(*, session: Session, key_id: str) -> ApiKey:
    """Lift a suspension."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no API key with id {key_id!r}", param="key_id")
    row.suspended_at = None
    row.suspended_reason = None
    session.flush()
    return row
