"""GET /metrics: this API process's counters, and the fleet gauges read from the database."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.deps import SessionFactoryDep, SettingsDep
from shared.db.base import utcnow
from shared.db.queue_stats import stage_loads
from shared.db.workers import count_workers
from shared.metrics import FleetCollector, FleetSnapshot
from shared.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["metrics"])


def read_snapshot(sessions: sessionmaker[Session], settings: Settings) -> FleetSnapshot | None:
    """Queue depth per stage and workers per state now; None when the database fails."""
    now = utcnow()
    stale_s = settings.heartbeat_stale_s
    try:
        with sessions() as session:
            loads = stage_loads(session=session, stale_after_s=stale_s, now=now)
            workers = count_workers(session=session, stale_after_s=stale_s, now=now)
    except SQLAlchemyError as exc:
        log.warning("metrics: fleet gauges left out, the database failed: %s", exc)
        return None
    return FleetSnapshot(
        queue_depth={load.stage.value: load.waiting for load in loads},
        workers={state.value: count for state, count in workers.items()},
    )


@router.get("/metrics", include_in_schema=False)
def read_metrics(sessions: SessionFactoryDep, settings: SettingsDep) -> Response:
    """Prometheus text exposition (public, like /healthz: it holds counts, not content)."""
    fleet = CollectorRegistry(auto_describe=False)
    fleet.register(FleetCollector(lambda: read_snapshot(sessions, settings)))
    body = generate_latest(REGISTRY) + generate_latest(fleet)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
