"""Service throughput: images/s of one saturated worker, against the bare model library.

Usage, from the repository root (PostgreSQL and Redis as in docs/benchmarks.md for distributed):
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_service [--jobs 16] [--steps 10,10,4]
        [--modes embedded,distributed] [--batch 1,8] [--one-step 20]

The same small jobs (generate, n=1, distinct prompts and seeds, the tiny random-weight
reference family, 64x64) are rendered in the same run:
- bare: worker/unclip/render.py `render()` in this process, one job at a time (beside the
  unbatched service runs) or eight at a time (beside the batched ones): the library alone;
- embedded: `unclip up` (SQLite, filesystem broker, local storage; API and worker processes);
- distributed: `unclip api` + `unclip worker` on a private PostgreSQL database and Redis db;
each service mode with UNCLIP_BATCH__MAX=1 (unbatched) and =8 (dynamic batching), the bare
figure measured just before and just after each service run (this machine is shared: only
figures taken together compare). All jobs are submitted at once over HTTP once a warm-up job
has loaded the family, and the wall time runs from the first POST to the last job succeeding.
`--one-step N` also times N jobs of 1/1/1 steps through `unclip up` (the embedded broker's
figure); `--task-level N` alternates batch 1 and batch 8 N times over the stage tasks in this
process (no HTTP, no broker), so that pairs are taken seconds apart.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import torch
from sqlalchemy import func, select

from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.db.models import Job
from shared.settings import Settings
from worker.unclip.reference_family import make_reference_family, save_reference_family
from worker.unclip.render import render
from worker.unclip.render_spec import RenderSpec, StageSteps

REPO = Path(__file__).resolve().parents[1]
READY_S = 180.0
STOP_S = 20.0
JOB_TIMEOUT_S = 900.0
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def job_body(i: int, steps: StageSteps) -> dict[str, Any]:
    return {
        "prompt": f"a small shape number {i}", "n": 1, "seed": 1000 + i, "size": "64x64",
        "steps": {"prior": steps.prior, "decoder": steps.decoder, "upsampler": steps.upsampler},
        "sampler": "ddim", "prior_guidance": 4.0, "decoder_guidance": 8.0,
    }  # fmt: skip


def job_spec(i: int, steps: StageSteps) -> RenderSpec:
    body = job_body(i, steps)
    return RenderSpec(kind="generate", prompt=body["prompt"], n=1, seed=body["seed"], steps=steps,
                      sampler="ddim", prior_guidance=4.0, decoder_guidance=8.0)  # fmt: skip


def bare_images_per_s(jobs: int, steps: StageSteps, batch: int) -> float:
    """The library alone on the same jobs, `batch` specs per render() call."""
    family = make_reference_family(device="cpu", dtype=torch.float32)
    specs = [job_spec(i, steps) for i in range(jobs)]
    render(family, specs[:1])  # warm-up
    start = time.perf_counter()
    for i in range(0, jobs, batch):
        render(family, specs[i : i + batch])
    return jobs / (time.perf_counter() - start)


# ---- running the service --------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    url: str
    settings: Settings


def _env(settings: Settings, batch: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        UNCLIP_DATA_DIR=str(settings.data_dir), UNCLIP_DATABASE_URL=settings.database_url,
        UNCLIP_BROKER_URL=settings.broker_url, UNCLIP_STORAGE_URL=settings.storage_url,
        UNCLIP_FAMILY=str(settings.family), UNCLIP_DEVICE="cpu",
        UNCLIP_FLEET__METRICS_PORT="0", UNCLIP_BATCH__MAX=str(batch),
        UNCLIP_BATCH__WAIT_MS="0", UNCLIP_KEY_DEFAULT_RPM="100000", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    return env


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "shared.cli", *argv]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


@contextmanager
def _private_services(data_dir: Path) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database and an empty Redis db index, dropped/flushed after."""
    import psycopg
    import redis

    name = f"unclip_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    client = None
    for index in range(1, 16):
        client = redis.Redis(host="127.0.0.1", port=6379, db=index, socket_timeout=3)
        if client.dbsize() == 0 and client.set("unclip-tests:owner", f"bench:{name}", nx=True):
            break
        client.close()
        client = None
    try:
        if client is None:
            raise RuntimeError("no empty Redis db index among 1-15")
        yield f"postgresql+psycopg://postgres@127.0.0.1/{name}", f"redis://127.0.0.1:6379/{index}"
    finally:
        if client is not None:
            client.flushdb()
            client.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def stack(mode: str, family: Path, batch: int) -> Iterator[Stack]:
    """A running service in `mode` with UNCLIP_BATCH__MAX=batch, its family warmed up."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as tmp:
        data_dir = Path(tmp)
        with _services(mode, data_dir) as (database_url, broker_url):
            settings = Settings(data_dir=data_dir, family=family, database_url=database_url,
                                broker_url=broker_url)  # fmt: skip
            upgrade(settings)
            env, port, log = _env(settings, batch), _free_port(), data_dir / "service.log"
            address = ["--host", "127.0.0.1", "--port", str(port)]
            if mode == "embedded":
                children = [_spawn(["up", *address], env, log)]
            else:
                children = [_spawn(["worker", "--queues", "prior,decoder,upsampler"], env, log),
                            _spawn(["api", *address], env, log)]  # fmt: skip
            try:
                service = Stack(f"http://127.0.0.1:{port}", settings)
                _wait_ready(service, children, log)
                yield service
            finally:
                _stop(children)


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each child (it stops its own children), SIGKILL its group if it lingers."""
    for child in children:
        child.send_signal(signal.SIGTERM)
    for child in children:
        with suppress(subprocess.TimeoutExpired):
            child.wait(timeout=STOP_S)
        with suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


@contextmanager
def _services(mode: str, data_dir: Path) -> Iterator[tuple[str, str]]:
    if mode == "embedded":
        yield "", "filesystem://"
        return
    with _private_services(data_dir) as urls:
        yield urls


def _wait_ready(service: Stack, children: list[subprocess.Popen[bytes]], log: Path) -> None:
    deadline = time.monotonic() + READY_S
    with httpx.Client(base_url=service.url, timeout=10) as client:
        while time.monotonic() < deadline:
            if any(child.poll() is not None for child in children):
                raise RuntimeError(f"the service exited:\n{log.read_text()[-3000:]}")
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        else:
            raise RuntimeError(f"no /readyz after {READY_S:.0f} s:\n{log.read_text()[-3000:]}")
    run_jobs(service, [job_body(10_000, StageSteps(1, 1, 1))])  # loads the family


def run_jobs(service: Stack, bodies: list[dict[str, Any]]) -> float:
    """Submit every job at once; seconds from the first POST until all have succeeded."""
    sessions = make_sessionmaker(make_engine(service.settings))
    with httpx.Client(base_url=service.url, timeout=30) as client:
        start = time.perf_counter()
        ids = []
        for body in bodies:
            response = client.post("/v1/jobs", json=body)
            response.raise_for_status()
            ids.append(response.json()["id"])
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            with sessions() as session:
                done = session.execute(
                    select(Job.status, func.count()).where(Job.id.in_(ids)).group_by(Job.status)
                ).all()  # fmt: skip
            counts = dict(done)
            if counts.get("succeeded", 0) == len(ids):
                return time.perf_counter() - start
            if any(s in counts for s in ("failed", "cancelled", "rejected", "held")):
                raise RuntimeError(f"jobs ended badly: {counts}")
            time.sleep(0.02)
    raise RuntimeError(f"jobs not done after {JOB_TIMEOUT_S:.0f} s")


def task_level_batching(jobs: int, steps: StageSteps, repeats: int) -> dict[str, Any]:
    """The three stage tasks in this process (SQLite, local storage, messages as a list),
    batch 1 and batch 8 alternated `repeats` times: images/s of each and their ratio per pair,
    figures taken seconds apart (the HTTP and broker hops are left out)."""
    from celery import Celery

    from shared.settings import Batch
    from shared.storage.local import LocalStorage
    from worker.tasks import base
    from worker.tasks.app import register_tasks
    from worker.tasks.base import RenderTask, Resources

    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        data_dir = Path(tmp)
        save_reference_family(data_dir / "family")
        settings = Settings(data_dir=data_dir, family=data_dir / "family", device="cpu")
        upgrade(settings)
        sessions = make_sessionmaker(make_engine(settings))
        storage = LocalStorage(data_dir / "storage")
        queue: list[tuple[str, str]] = []
        base.enqueue_stage = lambda app, job_id, stage, attempt, **_: queue.append(  # type: ignore[assignment]
            (job_id, str(stage))
        )
        app = register_tasks(Celery("bench-tasks", set_as_current=False))

        def run(batch: int, offset: int) -> float:
            RenderTask._resources = Resources(
                settings.model_copy(update={"batch": Batch(max=batch)}), sessions, storage
            )
            ids = []
            with sessions.begin() as session:
                for i in range(jobs):
                    body = job_body(offset + i, steps)
                    job = Job(
                        kind="generate", prompt=body["prompt"], n=1, size="64x64",
                        seed=body["seed"], sampler="ddim", steps_prior=steps.prior,
                        steps_decoder=steps.decoder, steps_upsampler=steps.upsampler,
                        prior_guidance=4.0, decoder_guidance=8.0, status="queued",
                    )  # fmt: skip
                    session.add(job)
                    session.flush()
                    ids.append(job.id)
            queue.extend((job_id, "prior") for job_id in ids)
            start = time.perf_counter()
            while queue:
                job_id, stage = queue.pop(0)
                app.tasks[f"render.{stage}"].apply(kwargs={"job_id": job_id}).get()
            return jobs / (time.perf_counter() - start)

        run(1, 90_000)  # warm-up: loads the family
        pairs = [(run(1, 100_000 * (r + 1)), run(8, 100_000 * (r + 1) + 50_000))
                 for r in range(repeats)]  # fmt: skip
    ratios = sorted(b8 / b1 for b1, b8 in pairs)
    return {
        "task_level_pairs_images_per_s": [[round(a, 3), round(b, 3)] for a, b in pairs],
        "task_level_batch8_vs_batch1_median": round(ratios[len(ratios) // 2], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--steps", type=StageSteps.parse, default=StageSteps(10, 10, 4))
    parser.add_argument("--modes", default="embedded,distributed")
    parser.add_argument("--batch", default="1,8", help="UNCLIP_BATCH__MAX values to run")
    parser.add_argument("--one-step", type=int, default=0, help="also N 1/1/1 jobs, embedded")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (bare run)")
    parser.add_argument("--task-level", type=int, default=0,
                        help="also N interleaved in-process batch 1 / batch 8 pairs")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.task_level:
        print(json.dumps(task_level_batching(args.jobs, args.steps, args.task_level)), flush=True)
    bodies = [job_body(i, args.steps) for i in range(args.jobs)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-family-") as family_dir:
        family = Path(family_dir)
        save_reference_family(family)
        for mode in [m for m in args.modes.split(",") if m]:
            for batch in [int(b) for b in args.batch.split(",") if b]:
                row = measure(mode, batch, family, bodies, args)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(json.dumps(summarise(rows), indent=1))


def measure(mode: str, batch: int, family: Path, bodies: list[dict[str, Any]],
            args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    """One service configuration, with the bare library measured just before and after it
    (the machine is shared: only figures taken together compare)."""
    row: dict[str, Any] = {"mode": mode, "batch_max": batch, "jobs": len(bodies)}
    bare_before = bare_images_per_s(len(bodies), args.steps, batch)
    with stack(mode, family, batch) as service:
        wall = run_jobs(service, bodies)
        if args.one_step and mode == "embedded" and batch == 1:
            one = [job_body(20_000 + i, StageSteps(1, 1, 1)) for i in range(args.one_step)]
            row[f"{args.one_step}_one_step_jobs_s"] = round(run_jobs(service, one), 2)
    bare_after = bare_images_per_s(len(bodies), args.steps, batch)
    bare = (bare_before + bare_after) / 2
    row.update(
        service_images_per_s=round(len(bodies) / wall, 3),
        bare_images_per_s=round(bare, 3),
        bare_spread=[round(bare_before, 3), round(bare_after, 3)],
        service_vs_bare=round(len(bodies) / wall / bare, 2),
    )
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Service / bare per row, and batch-8 / batch-1 service images/s per mode."""
    out: dict[str, Any] = {}
    for row in rows:
        out[f"{row['mode']}_batch{row['batch_max']}_vs_bare"] = row["service_vs_bare"]
    for mode in {row["mode"] for row in rows}:
        by_batch = {r["batch_max"]: r["service_images_per_s"] for r in rows if r["mode"] == mode}
        if 1 in by_batch and 8 in by_batch:
            out[f"{mode}_batch8_vs_batch1"] = round(by_batch[8] / by_batch[1], 2)
    return out


if __name__ == "__main__":
    main()
