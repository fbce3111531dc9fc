"""Every drill by name, with what it does; the short ones also run in `make test`."""

from __future__ import annotations

from bench.drills_lib import kill_drills, loss_drills, outage_drills
from bench.drills_lib.drill import Drill

DRILLS: tuple[Drill, ...] = (
    Drill("pool-kill", kill_drills.pool_kill, "kill -9 of the pool process running a decoder"),
    Drill("main-kill", kill_drills.main_kill, "kill -9 of the worker's main process (decoder)"),
    Drill("worker-kill", kill_drills.worker_kill, "kill -9 of a whole worker (decoder)"),
    Drill(
        "repeated-kills",
        kill_drills.repeated_kills,
        "20 jobs on two workers; pool, worker, pool killed -9",
    ),
    Drill("sigterm", kill_drills.sigterm_mid_stage, "SIGTERM mid-decoder, SIGKILL after grace"),
    Drill(
        "redis-flush",
        loss_drills.redis_flush,
        "FLUSHDB of the broker's db with 10 jobs",
        needs_sweeper=True,
    ),
    Drill(
        "publish-cut",
        loss_drills.publish_cut,
        "the decoder publish cut right after the prior's commit",
        needs_sweeper=True,
    ),
    Drill(
        "poison-storage",
        loss_drills.poison_storage,
        "a job whose decoder fails every attempt (storage) beside 6 healthy",
    ),
    Drill(
        "poison-crash",
        kill_drills.poison_crash,
        "a job whose every attempt is killed -9, beside 6 healthy",
    ),
    Drill(
        "broken-worker",
        loss_drills.broken_worker,
        "a worker with a broken family beside a healthy one, 10 jobs",
    ),
    Drill("db-down", outage_drills.db_down, "PostgreSQL refused for 20 s (proxy)"),
    Drill("db-hang", outage_drills.db_hang, "PostgreSQL black-holed for 20 s (proxy)"),
    Drill("broker-down", outage_drills.broker_down, "Redis refused for 20 s (proxy)"),
    Drill("broker-hang", outage_drills.broker_hang, "Redis black-holed for 20 s (proxy)"),
)

BY_NAME = {drill.name: drill for drill in DRILLS}


def select(names: str | None) -> list[Drill]:
    """The drills named in a comma-separated list (all when None), in table order."""
    if not names:
        return list(DRILLS)
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown drill(s) {unknown}; choose from {', '.join(BY_NAME)}")
    return [d for d in DRILLS if d.name in wanted]
