"""The fleet heartbeat thread: a burst of stage starts and ends makes one write, a completed
stage is written without waiting for more changes, and stop writes nothing late."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from shared.db.base import utcnow
from shared.db.workers import WorkerActivity, WorkerRecord
from worker.tasks import registry
from worker.tasks.registry import WorkerRegistration


class _Recorded(WorkerRegistration):
    """Saves into a list instead of the database."""

    def __init__(self) -> None:
        record = WorkerRecord(id="node:1", node="node", host="h", pid=1, queues=("prior",),
                              device="cpu", dtype="float32", family="f",
                              started_at=utcnow())  # fmt: skip
        super().__init__(sessions=None, record=record, interval_s=60.0, retention_s=3600.0)  # type: ignore[arg-type]
        self.saved: list[WorkerActivity] = []
        self.wrote = threading.Condition()

    def save(self) -> None:
        with self.wrote:
            self.saved.append(self.activity)
            self.wrote.notify_all()

    def _prune(self) -> None:
        pass

    def wait_for(self, test: Any, timeout: float = 10.0) -> bool:
        with self.wrote:
            return self.wrote.wait_for(lambda: test(self.saved), timeout=timeout)


@pytest.fixture
def heartbeat() -> Any:
    beat = _Recorded()
    beat.start()
    assert beat.wait_for(lambda saved: len(saved) == 1)  # registered
    yield beat
    beat._stop.set()
    beat._flush.set()
    beat._wake.set()
    beat._thread.join(5)


def test_a_burst_of_starts_and_ends_is_one_write(
    heartbeat: _Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "COALESCE_S", 0.5)
    for i in range(10):  # ten leftover messages, each acked without work
        heartbeat.job_started(f"job-{i}", "decoder")
        heartbeat.job_ended(completed=False)
    heartbeat.job_started("job-last", "decoder")
    assert heartbeat.wait_for(lambda saved: saved[-1].current_job_id == "job-last")
    # One write gathered all 21 changes (at most two, should the thread have woken between).
    assert len(heartbeat.saved) - 1 <= 2, heartbeat.saved


def test_a_completed_stage_is_written_without_gathering(
    heartbeat: _Recorded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "COALESCE_S", 30.0)  # a started stage alone waits this long
    heartbeat.job_started("job-1", "prior")
    heartbeat.job_ended(completed=True)
    # Well before the 30 s gathering time: the completion flushed it.
    assert heartbeat.wait_for(lambda saved: saved[-1].jobs_done == 1, timeout=10.0)
    assert heartbeat.saved[-1].current_job_id is None
