"""Sort a stage failure into an error code, and say whether another attempt may help."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from celery.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from shared.errors import (
    DatabaseUnavailable,
    InvalidStorageKey,
    QueueUnavailable,
    StorageError,
    StorageKeyNotFound,
    UnclipError,
)
from worker.tasks.family_cache import FamilyUnavailable

MAX_MESSAGE_CHARS = 2000
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 120.0


@dataclass(frozen=True)
class Failure:
    """What went wrong, for the job row, and whether to try again."""

    code: str
    message: str
    transient: bool


def classify(exc: BaseException) -> Failure:
    """Transient: database, storage and broker trouble. Never bad input or out-of-memory."""
    message = f"{type(exc).__name__}: {exc}"[:MAX_MESSAGE_CHARS]
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return Failure("out_of_memory", message, transient=False)
    if isinstance(exc, FamilyUnavailable):
        return Failure("family_unavailable", message, transient=False)
    if isinstance(exc, SoftTimeLimitExceeded):
        return Failure("time_limit", message, transient=False)
    if isinstance(exc, (StorageKeyNotFound, InvalidStorageKey)):
        return Failure("missing_input", message, transient=False)
    if isinstance(exc, StorageError):
        return Failure("storage_unavailable", message, transient=True)
    if isinstance(exc, (OperationalError, InterfaceError, DatabaseUnavailable)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return Failure("database_unavailable", message, transient=True)
    if isinstance(exc, (BrokerError, RedisConnectionError, RedisTimeoutError, QueueUnavailable)):
        return Failure("broker_unavailable", message, transient=True)
    if isinstance(exc, (ValueError, UnclipError)):
        return Failure("invalid_input", message, transient=False)
    return Failure("internal_error", message, transient=False)


def backoff_s(retries: int, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: up to base * 2**retries, capped."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2**retries))
    return (rng or random).uniform(ceiling / 2, ceiling)
