"""The worker's Prometheus endpoint: http://<fleet.metrics_host>:<fleet.metrics_port>/metrics.

Stage tasks run in prefork pool children, so the worker uses prometheus-client's multiprocess
mode: every process of one worker node writes its values to files in a folder of its own
(emptied when the node starts, removed when it stops), and the node's main process serves the
sum of them. Values stay per node: Prometheus adds the nodes up.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from celery import signals
from prometheus_client import CollectorRegistry, start_http_server, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_folder: Path | None = None
_server: Any = None


def metrics_folder(settings: Settings, node: str) -> Path:
    """The multiprocess folder of one worker node (its name and main pid keep nodes apart)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", node)
    return settings.data_dir / "metrics" / f"{safe}-{os.getpid()}"


def use_multiprocess_mode(folder: Path) -> None:
    """Empty `folder` and make every metric value from now on live in files there.

    prometheus-client picks its value class from PROMETHEUS_MULTIPROC_DIR at import, which
    happens before Celery starts the worker; all our metrics have labels, so no value exists
    until first use, and switching the class here (before the pool forks) covers them all.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)  # read again by every child's value files
    values.ValueClass = values.MultiProcessValue()


def serve(settings: Settings, folder: Path) -> int | None:
    """Serve the node's /metrics; the port it listens on, None if it could not bind."""
    global _server
    port = settings.fleet.metrics_port
    if port is None:
        return None
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    try:
        _server, _ = start_http_server(port, addr=settings.fleet.metrics_host, registry=registry)
    except OSError as exc:  # another worker on this host has the port: run without an endpoint
        log.warning("worker metrics: cannot listen on %s:%d (%s); set UNCLIP_FLEET__METRICS_PORT "
                    "to a free port", settings.fleet.metrics_host, port, exc)  # fmt: skip
        return None
    bound = int(_server.server_port)
    log.info("worker metrics on http://%s:%d/metrics", settings.fleet.metrics_host, bound)
    return bound


# ---- Celery signals -------------------------------------------------------------------------


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    global _folder
    settings = get_settings()
    if settings.fleet.metrics_port is None:
        return
    _folder = metrics_folder(settings, str(sender.hostname))
    use_multiprocess_mode(_folder)


def _on_worker_ready(**_: Any) -> None:
    if _folder is not None:
        serve(get_settings(), _folder)


def _on_process_shutdown(pid: int | None = None, **_: Any) -> None:
    if _folder is not None and pid is not None:
        mark_process_dead(pid, str(_folder))


def _on_worker_shutdown(**_: Any) -> None:
    if _server is not None:
        _server.shutdown()
    if _folder is not None:
        shutil.rmtree(_folder, ignore_errors=True)


def connect() -> None:
    """Connect the endpoint to the worker's Celery signals (idempotent)."""
    signals.worker_init.connect(_on_worker_init, weak=False, dispatch_uid="metrics-init")
    signals.worker_ready.connect(_on_worker_ready, weak=False, dispatch_uid="metrics-ready")
    signals.worker_process_shutdown.connect(
        _on_process_shutdown, weak=False, dispatch_uid="metrics-pexit"
    )
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False, dispatch_uid="metrics-exit")
