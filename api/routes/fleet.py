"""GET /v1/fleet (admin): every registered worker, queue depth and recent throughput per stage."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import AdminDep, SessionDep, SettingsDep
from api.schemas.fleet import FleetPublic, queue_public, throughput_public, worker_public
from shared.db.base import utcnow
from shared.db.queue_stats import stage_loads, stage_throughput
from shared.db.workers import list_workers

router = APIRouter(prefix="/v1", tags=["fleet"])


@router.get("/fleet", response_model=FleetPublic)
def read_fleet(_: AdminDep, session: SessionDep, settings: SettingsDep) -> FleetPublic:
    """Workers (silent ones shown as lost, not dropped), queue depth and throughput per stage."""
    now = utcnow()
    stale_s = settings.heartbeat_stale_s
    workers = list_workers(session=session, stale_after_s=stale_s, now=now)
    loads = stage_loads(session=session, stale_after_s=stale_s, now=now)
    window_s = settings.fleet.throughput_window_s
    throughput = stage_throughput(session=session, window_s=window_s, now=now)
    return FleetPublic(
        generated_at=now,
        stale_after_s=stale_s,
        workers=[worker_public(view) for view in workers],
        queues=[queue_public(load) for load in loads],
        throughput=[throughput_public(stats) for stats in throughput],
    )
