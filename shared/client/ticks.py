"""A blocking iterator read on a thread, so that its reader can act while it is quiet."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import TypeVar, cast

T = TypeVar("T")


class _End:
    """Put on the queue after the last item."""


class _Raised:
    """Put on the queue when the iterator raised."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _pump(items: Iterator[T], box: queue.Queue[object], stop: threading.Event) -> None:
    try:
        for item in items:
            box.put(item)
            if stop.is_set():
                break
        else:
            box.put(_End())
    except BaseException as exc:  # handed to the reader, who raises it in its own thread
        box.put(_Raised(exc))
    finally:
        close = getattr(items, "close", None)
        if callable(close):
            close()


def with_ticks(items: Iterator[T], every_s: float) -> Generator[T | None, None, None]:
    """The items of `items`, with a None whenever `every_s` seconds passed without one.

    `items` is read on a daemon thread (an event stream blocks between events); its error is
    raised here, in the caller's thread, so Ctrl-C and error handling stay where they were.
    Once the caller stops, the thread stops at the next item (or when its client closes).
    """
    box: queue.Queue[object] = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(target=_pump, args=(items, box, stop), daemon=True,
                              name="unclip-event-stream")  # fmt: skip
    reader.start()
    try:
        while True:
            try:
                got = box.get(timeout=every_s)
            except queue.Empty:
                yield None
                continue
            if isinstance(got, _End):
                return
            if isinstance(got, _Raised):
                raise got.exc
            yield cast(T, got)
    finally:
        stop.set()
