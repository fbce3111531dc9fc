"""with_ticks: None while the iterator is quiet, its items and its error in the caller's thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shared.client.ticks import with_ticks


def test_ticks_while_quiet_and_raises_the_readers_error_here() -> None:
    go = threading.Event()

    def items() -> Iterator[str]:
        yield "a"
        assert go.wait(5)
        yield "b"
        raise ValueError("stream broke")

    seen: list[str | None] = []
    with pytest.raises(ValueError, match="stream broke"):
        for item in with_ticks(items(), 0.01):
            seen.append(item)
            if seen.count(None) == 2:
                go.set()
    assert seen[0] == "a" and seen.count(None) >= 2 and seen[-1] == "b"


def test_stopping_early_closes_the_iterator() -> None:
    closed = threading.Event()

    def items() -> Iterator[int]:
        try:
            yield from range(1000)
        finally:
            closed.set()

    ticks = with_ticks(items(), 1.0)
    assert next(ticks) == 0
    ticks.close()
    assert closed.wait(5)
