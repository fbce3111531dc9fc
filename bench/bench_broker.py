"""Time the embedded broker options: message pickup latency, a backlog of no-op messages.

Usage, from the repository root:
    .venv/bin/python -m bench.bench_broker [--pings 10] [--backlog 200]

Each option runs a real Celery worker (prefork, concurrency 1, prefetch 1, late acks: the
stage workers' settings from shared/queue/celery_app.py) on its own temporary data folder:
- `filesystem://` at kombu's default 1 s polling interval (the old embedded default);
- `filesystem://` at the polling interval shared/queue/celery_app.py sets now;
- `sqla+sqlite://` (kombu's SQLAlchemy transport on a SQLite file) at the same interval.
"pickup" is the time from `send_task` to the task starting in the pool (one message at a
time); "backlog" is how long one message waits behind `--backlog` no-op messages (a no-op
task stands for a cancelled job's leftover message, which costs one claim check).
End to end through `unclip up` is bench/bench_service.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from celery import Celery

from shared.queue.celery_app import celery_config
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[1]
READY_S = 60.0


def make_app(broker_url: str, data_dir: Path, polling_s: float | None) -> Celery:
    """A Celery app with the stage workers' configuration and two bench tasks."""
    settings = Settings(data_dir=data_dir)
    config = celery_config(settings)
    config["broker_url"] = broker_url
    # The filesystem folders of the default settings; kombu's SQLAlchemy transport takes none.
    filesystem = broker_url.startswith("filesystem://")
    options = dict(config["broker_transport_options"]) if filesystem else {}
    if polling_s is None:
        options.pop("polling_interval", None)
    else:
        options["polling_interval"] = polling_s
    config["broker_transport_options"] = options
    app = Celery("bench-broker", set_as_current=False)
    app.conf.update(config)
    marks = data_dir / "marks"
    marks.mkdir(exist_ok=True)

    @app.task(name="render.prior", acks_late=True)  # type: ignore[untyped-decorator]
    def ping(mark: str) -> None:
        (marks / mark).write_text(repr(time.time()))

    @app.task(name="render.decoder", acks_late=True)  # type: ignore[untyped-decorator]
    def noop(mark: str) -> None:
        return None

    return app


def _worker_main(config: dict[str, Any]) -> None:
    app = make_app(config["broker_url"], Path(config["data_dir"]), config["polling_s"])
    app.worker_main(
        ["worker", "--queues=prior,decoder", "--concurrency=1", "--pool=prefork",
         "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    )  # fmt: skip


def _wait_mark(path: Path, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text()
            if text:
                return float(text)
        time.sleep(0.002)
    raise TimeoutError(f"no mark {path.name} after {timeout_s:.0f} s")


def measure(name: str, broker_url: str, polling_s: float | None, pings: int, backlog: int
            ) -> dict[str, Any]:  # fmt: skip
    """Pickup latency (median and max of `pings`) and the backlog wait for one option."""
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        data_dir = Path(tmp)
        url = broker_url.replace("{dir}", str(data_dir))
        config = {"broker_url": url, "data_dir": str(data_dir), "polling_s": polling_s}
        app = make_app(url, data_dir, polling_s)
        worker = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_broker", "--worker", json.dumps(config)],
            cwd=REPO, start_new_session=True,
        )  # fmt: skip
        try:
            app.send_task("render.prior", kwargs={"mark": "warm"}, queue="prior")
            _wait_mark(data_dir / "marks" / "warm", READY_S)
            latencies = []
            for i in range(pings):
                sent = time.time()
                app.send_task("render.prior", kwargs={"mark": f"p{i}"}, queue="prior")
                latencies.append(_wait_mark(data_dir / "marks" / f"p{i}", 60.0) - sent)
            for i in range(backlog):
                app.send_task("render.decoder", kwargs={"mark": f"n{i}"}, queue="prior")
            sent = time.time()
            app.send_task("render.prior", kwargs={"mark": "last"}, queue="prior")
            behind = _wait_mark(data_dir / "marks" / "last", 600.0) - sent
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
    return {
        "option": name,
        "pickup_median_s": round(statistics.median(latencies), 3),
        "pickup_max_s": round(max(latencies), 3),
        f"behind_{backlog}_noops_s": round(behind, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=200)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--intervals", default="", help="more filesystem polling intervals, s")
    parser.add_argument("--only", default="", help="comma-separated option names to run")
    args = parser.parse_args()
    if args.worker:
        _worker_main(json.loads(args.worker))
        return
    tuned = celery_config(Settings(data_dir=Path(tempfile.gettempdir()) / "bench-broker-probe"))
    interval = tuned["broker_transport_options"].get("polling_interval", 1.0)
    extra = [float(x) for x in args.intervals.split(",") if x]
    options = [
        ("filesystem, kombu default 1 s polling", "filesystem://", None),
        (f"filesystem, {interval} s polling (celery_app.py)", "filesystem://", interval),
        *[(f"filesystem, {x} s polling", "filesystem://", x) for x in extra],
        # kombu's SQLAlchemy transport hands every transport option to create_engine(), which
        # refuses polling_interval: it polls at the 1 s default whatever is configured.
        ("sqla+sqlite, kombu default 1 s polling", "sqla+sqlite:///{dir}/broker.db", None),
    ]
    wanted = {o for o in args.only.split(",") if o}
    for index, (name, url, polling) in enumerate(options):
        if wanted and str(index) not in wanted:
            continue
        print(json.dumps(measure(name, url, polling, args.pings, args.backlog)), flush=True)


if __name__ == "__main__":
    main()
