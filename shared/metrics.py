"""Every Prometheus metric of the service, defined once, and the helpers that record them.

How the numbers stay right across a fleet of processes:
- Event counters and histograms are per process. Each process counts what it did itself (the
  API the jobs it created, a worker the stages it ran) and exposes its own values: the API on
  its `/metrics`, a worker on its own port (its pool processes through prometheus-client's
  multiprocess mode). Prometheus sums the targets: `sum by (kind) (rate(...[5m]))`.
  Where each is counted: submitted in api/submission.py once the row is committed; finished
  in shared/db/states.py `transition` (cancels, moderation rejects, reviews) and, for stage
  runs that end a job through claims.py's own updates, in worker/tasks/telemetry.py;
  moderation decisions in shared/db/verdicts.py `record_verdict`; stage seconds and batch
  sizes in worker/tasks/telemetry.py (a batch reports its own size, worker/tasks/batching.py).
  A new place that writes a terminal status without `transition` must call count_finished.
- Fleet-wide state (`unclip_queue_depth`, `unclip_workers`) is not counted anywhere: a
  `FleetCollector` reads it from the database at scrape time, on the API's `/metrics` only,
  so there is one series per label whatever the number of workers (and it survives restarts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Stages run from ~0.05 s (tiny CPU family) to minutes (full-size decoder on a busy GPU).
STAGE_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)

JOBS_SUBMITTED = Counter(
    "unclip_jobs_submitted", "Jobs created, by kind (generate|variation|edit).", ["kind"]
)
JOBS_FINISHED = Counter(
    "unclip_jobs_finished", "Jobs that reached a terminal status, by that status.", ["status"]
)
STAGE_SECONDS = Histogram(
    "unclip_stage_seconds",
    "Wall time of a stage run that completed its stage, by stage.",
    ["stage"],
    buckets=STAGE_SECONDS_BUCKETS,
)
BATCH_SIZE = Histogram(
    "unclip_batch_size",
    "Jobs rendered together in one stage run of the model library, by stage.",
    ["stage"],
    buckets=BATCH_SIZE_BUCKETS,
)
MODERATION_DECISIONS = Counter(
    "unclip_moderation_decisions",
    "Moderation verdicts recorded, by check (lexical|semantic|image) and decision.",
    ["check", "decision"],
)
QUEUE_DEPTH = "unclip_queue_depth"
WORKERS = "unclip_workers"
# Every name /metrics shows (counters gain a _total suffix in the exposition).
METRIC_NAMES = (
    "unclip_jobs_submitted_total",
    "unclip_jobs_finished_total",
    "unclip_stage_seconds",
    QUEUE_DEPTH,
    "unclip_batch_size",
    "unclip_moderation_decisions_total",
    WORKERS,
)

# Set once a stage run reported its batch, so the worker's per-run default does not add a 1.
_batch_observed: ContextVar[bool] = ContextVar("unclip_batch_observed", default=False)


def count_submitted(kind: str) -> None:
    """One job of `kind` was created (after its row is committed)."""
    JOBS_SUBMITTED.labels(kind=kind).inc()


def count_finished(status: str) -> None:
    """One job reached terminal `status` (succeeded, failed, cancelled, rejected)."""
    JOBS_FINISHED.labels(status=status).inc()


def observe_stage(stage: str, seconds: float) -> None:
    """A run of `stage` completed it in `seconds`."""
    STAGE_SECONDS.labels(stage=stage).observe(seconds)


def observe_batch(stage: str, size: int) -> None:
    """A run of `stage` rendered `size` jobs together (1 when unbatched)."""
    BATCH_SIZE.labels(stage=stage).observe(size)
    _batch_observed.set(True)


def batch_observed() -> bool:
    """Whether this run (this context) already reported its batch size."""
    return _batch_observed.get()


def reset_batch_observed() -> None:
    """Forget the flag at the start of a run."""
    _batch_observed.set(False)


def count_moderation_decision(check: str, decision: str) -> None:
    """One moderation verdict of `check` decided `decision` (allow|hold|block)."""
    MODERATION_DECISIONS.labels(check=check, decision=decision).inc()


@dataclass(frozen=True)
class FleetSnapshot:
    """What the fleet gauges show: jobs waiting per queue and workers per state."""

    queue_depth: dict[str, int]
    workers: dict[str, int]


class FleetCollector(Collector):
    """`unclip_queue_depth{queue}` and `unclip_workers{state}`, read when scraped.

    `read` returns a snapshot, or None when the database cannot be read: the gauges are then
    left out of that scrape (absent, not a misleading zero) and the rest is still served.
    """

    def __init__(self, read: Callable[[], FleetSnapshot | None]) -> None:
        self._read = read

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(QUEUE_DEPTH, "", labels=["queue"])
        yield GaugeMetricFamily(WORKERS, "", labels=["state"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            QUEUE_DEPTH, "Jobs waiting at a stage queue without a live claim.", labels=["queue"]
        )
        workers = GaugeMetricFamily(
            WORKERS, "Registered workers by state (idle|busy|lost|stopped).", labels=["state"]
        )
        snapshot = self._read()
        if snapshot is not None:
            for queue, count in snapshot.queue_depth.items():
                depth.add_metric([queue], count)
            for state, count in snapshot.workers.items():
                workers.add_metric([state], count)
        yield depth
        yield workers
