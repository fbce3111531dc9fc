"""Fixed-window request counters in the database, for rate limits shared by API processes.

Each increment is one atomic UPSERT (INSERT ... ON CONFLICT DO UPDATE ... RETURNING), which
SQLite and PostgreSQL both run under their own locking, so concurrent processes never lose
a hit. Redis holds the same counters in distributed mode (api/rate_limits.py).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.db.models import RateLimitWindow


def increment_window(
    *, session: Session, key: str, expiry_s: float, amount: int, now: float
) -> int:
    """Add `amount` to the window `key` (a fresh window once the old one expired); the count."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    fresh = insert(RateLimitWindow).values(key=key, count=amount, expires_at=now + expiry_s)
    expired = RateLimitWindow.expires_at <= now
    statement = fresh.on_conflict_do_update(
        index_elements=[RateLimitWindow.key],
        set_={
            "count": case(
                (expired, fresh.excluded.count),
                else_=RateLimitWindow.count + fresh.excluded.count,
            ),
            "expires_at": case(
                (expired, fresh.excluded.expires_at), else_=RateLimitWindow.expires_at
            ),
        },
    ).returning(RateLimitWindow.count)
    count = session.execute(statement).scalar_one()
    return int(count)


def window_state(*, session: Session, key: str, now: float) -> tuple[int, float | None]:
    """(count, expires_at) of a live window; (0, None) when there is none or it expired."""
    row = session.execute(
        select(RateLimitWindow.count, RateLimitWindow.expires_at).where(
            RateLimitWindow.key == key, RateLimitWindow.expires_at > now
        )
    ).first()
    return (0, None) if row is None else (int(row[0]), float(row[1]))


def clear_windows(*, session: Session, key: str | None = None) -> int:
    """Delete one window, or all of them; the number deleted."""
    statement = delete(RateLimitWindow)
    if key is not None:
        statement = statement.where(RateLimitWindow.key == key)
    result = cast(CursorResult[Any], session.execute(statement))
    return result.rowcount or 0
