"""The worker's entry in the fleet registry: registered at start, rewritten every heartbeat.

One registration per process that runs stage tasks: each prefork pool child registers itself
in `worker_process_init` (so a killed child shows up as a lost worker of its own), a solo
worker does the same in its main process, and a threads worker registers its main process
at `worker_ready`. A background thread saves the row every settings.heartbeat_interval_s,
at once when a stage task completes its stage (jobs_done moves), and within COALESCE_S when one
starts or ends otherwise: the changes of that short while make one write (a batch's leftover
messages, each a task that starts and ends within milliseconds, or a stage's start after the
previous one's end), not one each. Task code never waits on the registry's writes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery import signals
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.workers import (
    WorkerActivity,
    WorkerRecord,
    prune_workers,
    save_worker,
    stop_worker,
)
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 5.0
# How long a woken heartbeat thread lets further changes gather before it writes. Two writes
# per stage task were ~4.5% of a distributed pool child's samples (docs/benchmarks.md).
COALESCE_S = 0.05
_node_queues: tuple[str, ...] = ()
_registration: WorkerRegistration | None = None


class WorkerRegistration:
    """This process's registry row, and the thread that keeps it fresh."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        record: WorkerRecord,
        *,
        interval_s: float,
        retention_s: float,
    ) -> None:
        self.record = record
        self._sessions = sessions
        self._interval_s = interval_s
        self._retention_s = retention_s
        self._lock = threading.Lock()
        self._activity = WorkerActivity()
        self._wake = threading.Event()
        self._flush = threading.Event()  # a completed stage, or stop: write without gathering
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-heartbeat", daemon=True)

    @property
    def activity(self) -> WorkerActivity:
        with self._lock:
            return self._activity

    def start(self) -> None:
        self._thread.start()

    def job_started(self, job_id: str, stage: str) -> None:
        with self._lock:
            self._activity = WorkerActivity(job_id, stage, utcnow(), self._activity.jobs_done)
        self._wake.set()

    def job_ended(self, *, completed: bool) -> None:
        """The stage run ended; `completed` counts it in jobs_done (it finished its stage)."""
        with self._lock:
            self._activity = WorkerActivity(jobs_done=self._activity.jobs_done + int(completed))
        if completed:
            self._flush.set()
        self._wake.set()

    def stop(self) -> None:
        """Stop the heartbeat and mark the row stopped (a clean exit is not a lost worker)."""
        self._stop.set()
        self._flush.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=JOIN_TIMEOUT_S)
        try:
            with self._sessions.begin() as session:
                stop_worker(session=session, worker_id=self.record.id)
        except Exception:
            log.warning("worker %s: could not mark itself stopped", self.record.id, exc_info=True)

    def save(self) -> None:
        """Write the row now (insert it if missing)."""
        with self._sessions.begin() as session:
            save_worker(session=session, record=self.record, activity=self.activity)

    def _prune(self) -> None:
        with self._sessions.begin() as session:
            pruned = prune_workers(session=session, older_than_s=self._retention_s)
        if pruned:
            log.info("fleet registry: pruned %d workers silent for over %.0f s", pruned,
                     self._retention_s)  # fmt: skip

    def _run(self) -> None:
        try:
            self._prune()
        except Exception:
            log.warning("fleet registry: prune failed", exc_info=True)
        registered = False
        while not self._stop.is_set():
            try:
                self.save()
            except Exception:  # the database may be back by the next beat
                log.warning("worker %s: registry heartbeat failed", self.record.id, exc_info=True)
            else:
                if not registered:
                    log.info("worker %s registered (queues %s)", self.record.id,
                             ",".join(self.record.queues))  # fmt: skip
                registered = True
            if self._wake.wait(self._interval_s):
                self._flush.wait(COALESCE_S)  # let the rest of a burst of changes arrive
            self._flush.clear()
            self._wake.clear()


def _device(settings: Settings) -> tuple[str, str]:
    """The device and dtype this worker computes in (as the family cache resolves them)."""
    from worker.tasks.family_cache import resolve_device

    try:
        device = resolve_device(settings.device).type
    except Exception:  # a cuda worker without a GPU: say what it was configured with
        return settings.device, settings.dtype
    return device, settings.dtype if device != "cpu" else "float32"


def worker_record(settings: Settings, node: str, queues: tuple[str, ...]) -> WorkerRecord:
    """What this process registers as (its id matches the worker_id of its claims)."""
    device, dtype = _device(settings)
    pid = os.getpid()
    return WorkerRecord(
        id=f"{node}:{pid}", node=node, host=socket.gethostname(), pid=pid, queues=queues,
        device=device, dtype=dtype, family=str(settings.family), started_at=utcnow(),
    )  # fmt: skip


def register(node: str, queues: tuple[str, ...], settings: Settings | None = None) -> None:
    """Register this process (once) and start its heartbeat thread."""
    global _registration
    if _registration is not None:
        return
    settings = settings or get_settings()
    engine: Engine = make_engine(settings)
    _registration = WorkerRegistration(
        make_sessionmaker(engine),
        worker_record(settings, node, queues),
        interval_s=settings.heartbeat_interval_s,
        retention_s=settings.fleet.retention_s,
    )
    _registration.start()


def current() -> WorkerRegistration | None:
    """This process's registration, None outside a registered worker."""
    return _registration


def unregister() -> None:
    """Mark this process stopped and stop heart-beating."""
    global _registration
    if _registration is not None:
        _registration.stop()
        _registration = None


# ---- Celery signals -------------------------------------------------------------------------


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    global _node_queues
    _node_queues = tuple(sorted(sender.app.amqp.queues.consume_from or ()))


def _on_process_init(sender: Any = None, **_: Any) -> None:
    if sender:  # prefork child and solo pool: sender is the node name
        register(str(sender), _node_queues)


def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    from celery.concurrency.prefork import TaskPool as PreforkPool
    from celery.concurrency.solo import TaskPool as SoloPool

    # Prefork children and the solo pool registered in worker_process_init; a threads (or
    # green) pool runs tasks in this main process, which registers now.
    if not isinstance(getattr(sender, "pool", None), PreforkPool | SoloPool):
        register(str(sender.hostname), _node_queues)


def _on_task_prerun(task: Any = None, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    stage = getattr(task, "stage", None)
    if _registration is not None and stage is not None:
        _registration.job_started(str((kwargs or {}).get("job_id")), str(stage))


def _on_task_postrun(task: Any = None, retval: Any = None, **_: Any) -> None:
    if _registration is not None and getattr(task, "stage", None) is not None:
        _registration.job_ended(completed=retval == "done")


def _on_shutdown(**_: Any) -> None:
    unregister()


def connect() -> None:
    """Connect the registry to the worker's Celery signals (idempotent)."""
    signals.worker_init.connect(_on_worker_init, weak=False, dispatch_uid="fleet-init")
    signals.worker_process_init.connect(_on_process_init, weak=False, dispatch_uid="fleet-proc")
    signals.worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="fleet-ready")
    signals.task_prerun.connect(_on_task_prerun, weak=False, dispatch_uid="fleet-prerun")
    signals.task_postrun.connect(_on_task_postrun, weak=False, dispatch_uid="fleet-postrun")
    signals.worker_process_shutdown.connect(_on_shutdown, weak=False, dispatch_uid="fleet-pexit")
    signals.worker_shutdown.connect(_on_shutdown, weak=False, dispatch_uid="fleet-exit")
