"""Requests per minute per key on the create endpoints, with the `limits` library.

Counters live in Redis when the broker is Redis (distributed mode) and in the database
otherwise (embedded mode), so every API process sharing them agrees. Responses carry
x-ratelimit-limit-requests, x-ratelimit-remaining-requests and x-ratelimit-reset-requests
as OpenAI sends them; over the limit is 429 rate_limit_exceeded with Retry-After.

The counters' store is the broker or the database. A database outage is the request's 503
(database_unavailable) at once. A Redis that timed out (hung) is a 503 queue_unavailable at
once too: the publish to the same server would wait out the same timeout again
(settings.broker_socket_timeout_s) before the same answer. Any other failure of the counting
(a refused Redis costs nothing: the publish then decides) is logged and the request served.
"""

from __future__ import annotations

import logging
import math
import time
from typing import cast

from fastapi import Request
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import RedisStorage, Storage
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.auth import add_response_headers
from api.deps import PrincipalDep
from shared.db import rate_windows
from shared.errors import DatabaseUnavailable, QueueUnavailable, RateLimited
from shared.queue.dispatch import timed_out
from shared.settings import Settings

logger = logging.getLogger(__name__)
REDIS_KEY_PREFIX = "unclip-ratelimit"
CREATE_SCOPE = "create"


class DatabaseStorage(Storage):
    """A `limits` storage on the jobs database (fixed windows only), for embedded mode."""

    STORAGE_SCHEME = ["unclip+database"]

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        super().__init__()
        self.sessions = sessions

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        with self.sessions.begin() as session:
            return rate_windows.increment_window(
                session=session, key=key, expiry_s=expiry, amount=amount, now=time.time()
            )

    def get(self, key: str) -> int:
        with self.sessions() as session:
            return rate_windows.window_state(session=session, key=key, now=time.time())[0]

    def get_expiry(self, key: str) -> float:
        now = time.time()
        with self.sessions() as session:
            expires_at = rate_windows.window_state(session=session, key=key, now=now)[1]
        return now if expires_at is None else expires_at

    def check(self) -> bool:
        try:
            self.get("health")
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self.sessions.begin() as session:
            return rate_windows.clear_windows(session=session)

    def clear(self, key: str) -> None:
        with self.sessions.begin() as session:
            rate_windows.clear_windows(session=session, key=key)


def make_rate_storage(settings: Settings, sessions: sessionmaker[Session]) -> Storage:
    """Redis when the broker is Redis, else the database: shared by all API processes."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisStorage(
            settings.broker_url, key_prefix=REDIS_KEY_PREFIX,
            socket_timeout=settings.broker_socket_timeout_s,
            socket_connect_timeout=settings.broker_connect_timeout_s,
        )  # fmt: skip
    return DatabaseStorage(sessions)


def _storage(request: Request) -> Storage:
    state = request.app.state
    storage = getattr(state, "rate_limit_storage", None)
    if storage is None:  # built on first use; two threads racing build equivalent ones
        storage = make_rate_storage(
            cast(Settings, state.settings), cast(sessionmaker[Session], state.sessionmaker)
        )
        state.rate_limit_storage = storage
    return cast(Storage, storage)


def _hit(storage: Storage, item: RateLimitItem, scope: str) -> tuple[int, float]:
    """A fixed-window hit, as limits' FixedWindowRateLimiter.hit counts it, but keeping the
    count this hit made (exact remaining headers under concurrency): (count, reset time)."""
    key = item.key_for(CREATE_SCOPE, scope)
    count = storage.incr(key, item.get_expiry())
    return count, storage.get_expiry(key)


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI writes x-ratelimit-reset-requests: "120ms", "7.5s", "1m0s"."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"


def enforce_create_rate(request: Request, principal: PrincipalDep) -> None:
    """Dependency of every create endpoint: count the request against the key's rpm."""
    if principal.rpm is None:
        return
    item = RateLimitItemPerMinute(principal.rpm)
    storage = _storage(request)
    try:
        count, reset_at = _hit(storage, item, principal.scope)
    except DatabaseUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - a failure of the counting alone: serve
        if isinstance(storage, RedisStorage) and timed_out(exc):
            settings = cast(Settings, request.app.state.settings)
            raise QueueUnavailable(
                f"the broker (which holds the rate-limit counters) does not answer: {exc}",
                retry_after_s=settings.broker_retry_after_s,
            ) from exc
        logger.warning("rate limit storage failed, request allowed: %r", exc)
        return
    reset_in = max(0.0, reset_at - time.time())
    add_response_headers(
        request,
        {
            "x-ratelimit-limit-requests": str(principal.rpm),
            "x-ratelimit-remaining-requests": str(max(0, principal.rpm - count)),
            "x-ratelimit-reset-requests": format_reset(reset_in),
        },
    )
    if count > principal.rpm:
        retry_after = max(1, math.ceil(reset_in))
        raise RateLimited(
            f"key {principal.name!r} sent more than {principal.rpm} create requests in a "
            f"minute; retry after {retry_after} s",
            retry_after_s=retry_after,
        )
