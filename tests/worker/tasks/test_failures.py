"""Only database, storage and broker trouble is retried; bad input and OOM are final."""

from __future__ import annotations

import random

import pytest
import torch
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import OperationalError

from shared.db.engine import DatabaseUnavailableError, PoolExhaustedError
from shared.errors import StorageError, StorageKeyNotFound
from worker.tasks.failures import BACKOFF_MAX_S, backoff_s, classify


@pytest.mark.parametrize(
    ("exc", "code", "transient"),
    [
        (
            OperationalError("SELECT 1", {}, Exception("server closed")),
            "database_unavailable",
            True,
        ),
        (StorageError("s3 timed out"), "storage_unavailable", True),
        (BrokerError("connection refused"), "broker_unavailable", True),
        (StorageKeyNotFound("no such key 'jobs/x'"), "missing_input", False),
        (ValueError("mask size (3, 3) must equal the image size (4, 4)"), "invalid_input", False),
        (torch.cuda.OutOfMemoryError("CUDA out of memory"), "out_of_memory", False),
        (RuntimeError("shape mismatch"), "internal_error", False),
    ],
)
def test_classify(exc: Exception, code: str, transient: bool) -> None:
    failure = classify(exc)
    assert (failure.code, failure.transient) == (code, transient)
    assert type(exc).__name__ in failure.message


def test_backoff_grows_and_is_capped() -> None:
    rng = random.Random(0)
    first = [backoff_s(0, rng=rng) for _ in range(50)]
    later = [backoff_s(3, rng=rng) for _ in range(50)]
    assert max(first) <= 2.0 < min(later)
    assert max(backoff_s(30, rng=rng) for _ in range(50)) <= BACKOFF_MAX_S


def test_database_outages_raised_by_our_engine_are_transient() -> None:
    refused = OperationalError("SELECT 1", {}, Exception("connection refused"))
    for exc in (DatabaseUnavailableError(refused), PoolExhaustedError("QueuePool limit reached")):
        failure = classify(exc)
        assert (failure.code, failure.transient) == ("database_unavailable", True), exc
