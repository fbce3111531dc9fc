"""Service throughput: images/s of one saturated worker, against the bare model library.

Usage, from the repository root (PostgreSQL and Redis as in docs/benchmarks.md for distributed):
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_service [--jobs 16] [--steps 10,10,4]
        [--modes embedded,distributed] [--batch 1,8] [--repeat 2] [--one-step 20]
        [--task-level 2] [--warm-rounds 1] [--trees after=DIR,before=DIR] [--family DIR]
        [--pipeline 1,2] [--json docs/bench/service_throughput.json]

The same small jobs (generate, n=1, distinct prompts and seeds, the tiny random-weight
reference family or the `--family` folder given, e.g. the shipped models/shapes, 64x64) are
rendered in the same run:
- bare: worker/unclip/render.py `render()` in this process, one job at a time (beside the
  unbatched service runs) or eight at a time (beside the batched ones): the library alone;
- embedded: `unclip up` (SQLite, filesystem broker, local storage; API and worker processes);
- distributed: `unclip api` + `unclip worker` on a private PostgreSQL database and Redis db;
each service mode with UNCLIP_BATCH__MAX=1 (unbatched) and =8 (dynamic batching), the bare
figure measured just before and just after each service run (this machine is shared: only
figures taken together compare). All jobs are submitted at once over HTTP once a warm-up job
has loaded the family; the wall time runs from the first POST to the last job's finished_at.
Beside images/s each row gives CPU seconds per image of the service's processes and of the
bare library, which the machine's load moves far less, and the mean batch size per stage.
`--one-step N` also times N jobs of 1/1/1 steps through `unclip up` (the embedded broker's
figure); `--task-level N` runs N rounds of the three stage tasks in this process (no HTTP, no
broker) beside the bare library, with and without the moderation checks (the latter for
attribution only: the service always runs them). `--warm-rounds N` first runs N untimed
rounds of the same kind of jobs through each service and the same render() calls through
each bare family (caches per batch shape, such as the library's frozen graphs, are then
warm on both sides). `--trees NAME=DIR,...` runs each service configuration from each of
these source trees in turn (copies of the repository, e.g. one with a change and one
without), interleaved, beside the same bare figures; without it the service runs from this
repository. `--pipeline 1,2` runs each configuration (of each tree) with each UNCLIP_PIPELINE
value in turn, the same way (pool processes that take turns on the device,
worker/tasks/device_turns.py).
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
from worker.unclip.family import load_family
from worker.unclip.reference_family import make_reference_family, save_reference_family
from worker.unclip.render import render
from worker.unclip.render_spec import RenderSpec, StageSteps

REPO = Path(__file__).resolve().parents[1]
READY_S = 180.0
STOP_S = 20.0
JOB_TIMEOUT_S = 900.0
POLL_S = 0.25
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


@dataclass(frozen=True)
class Rate:
    """Images per second of wall time, and CPU seconds spent per image."""

    images_per_s: float
    cpu_s_per_image: float


def bare_rate(
    jobs: int, steps: StageSteps, batch: int, warm_rounds: int = 0, family_dir: Path | None = None
) -> Rate:
    """The library alone on the same jobs, `batch` specs per render() call, after one job
    (or `warm_rounds` untimed passes over the same calls) as a warm-up; the family in
    `family_dir`, else the tiny reference family."""
    if family_dir is None:
        family = make_reference_family(device="cpu", dtype=torch.float32)
    else:
        family = load_family(family_dir)
    specs = [job_spec(i, steps) for i in range(jobs)]
    render(family, specs[:1])  # warm-up
    for _ in range(warm_rounds):  # the same batch shapes as timed (per-shape caches)
        for i in range(0, jobs, batch):
            render(family, specs[i : i + batch])
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, jobs, batch):
        render(family, specs[i : i + batch])
    return Rate(jobs / (time.perf_counter() - start), (time.process_time() - cpu) / jobs)


def tree_cpu_s(roots: list[int]) -> float:
    """CPU seconds (user + system) used so far by `roots` and every process below them."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            parents[pid] = int(fields[1])
            used[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, todo, seen = 0.0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += used.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


# ---- running the service --------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    url: str
    settings: Settings
    pids: list[int]  # the service's own processes (their children are counted with them)


def _env(settings: Settings, batch: int, pipeline: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if pipeline is not None:
        env["UNCLIP_PIPELINE"] = str(pipeline)
    env.update(
        UNCLIP_DATA_DIR=str(settings.data_dir), UNCLIP_DATABASE_URL=settings.database_url,
        UNCLIP_BROKER_URL=settings.broker_url, UNCLIP_STORAGE_URL=settings.storage_url,
        UNCLIP_FAMILY=str(settings.family), UNCLIP_DEVICE="cpu",
        UNCLIP_FLEET__METRICS_PORT="0", UNCLIP_BATCH__MAX=str(batch),
        UNCLIP_BATCH__WAIT_MS="0", UNCLIP_KEY_DEFAULT_RPM="100000", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    return env


def _spawn(
    argv: list[str], env: dict[str, str], log: Path, tree: Path = REPO
) -> subprocess.Popen[bytes]:
    """`python -m shared.cli argv` with `tree`'s code (first on sys.path, as the cwd)."""
    command = [sys.executable, "-m", "shared.cli", *argv]
    env = {**env, "PYTHONPATH": str(tree)}
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=tree, env=env, stdout=out,
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
def stack(
    mode: str, family: Path, batch: int, tree: Path = REPO, pipeline: int | None = None
) -> Iterator[Stack]:
    """A running service in `mode` with UNCLIP_BATCH__MAX=batch (and UNCLIP_PIPELINE=pipeline
    when given), its family warmed up, run from the source tree `tree`."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as tmp:
        data_dir = Path(tmp)
        with _services(mode, data_dir) as (database_url, broker_url):
            settings = Settings(data_dir=data_dir, family=family, database_url=database_url,
                                broker_url=broker_url)  # fmt: skip
            upgrade(settings)
            env, port = _env(settings, batch, pipeline), _free_port()
            log = data_dir / "service.log"
            address = ["--host", "127.0.0.1", "--port", str(port)]
            if mode == "embedded":
                children = [_spawn(["up", *address], env, log, tree)]
            else:
                children = [
                    _spawn(["worker", "--queues", "prior,decoder,upsampler"], env, log, tree),
                    _spawn(["api", *address], env, log, tree),
                ]
            try:
                service = Stack(f"http://127.0.0.1:{port}", settings, [c.pid for c in children])
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
    """Submit every job at once; seconds from the first POST until the last job finished.

    The end is the last job's own finished_at (written by the worker, same clock), so the
    poll that notices it can be slow: it runs every POLL_S and stays off the cores the
    worker needs (at 0.02 s it cost about a third of the worker's own CPU time).
    """
    sessions = make_sessionmaker(make_engine(service.settings))
    with httpx.Client(base_url=service.url, timeout=30) as client:
        start = time.time()
        ids = []
        for body in bodies:
            response = client.post("/v1/jobs", json=body)
            response.raise_for_status()
            ids.append(response.json()["id"])
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            with sessions() as session:
                done = session.execute(
                    select(Job.status, func.count(), func.max(Job.finished_at))
                    .where(Job.id.in_(ids)).group_by(Job.status)
                ).all()  # fmt: skip
            counts = {status: n for status, n, _ in done}
            if counts.get("succeeded", 0) == len(ids):
                ends = [at for status, _, at in done if status == "succeeded" and at is not None]
                return max(ends).timestamp() - start
            if any(s in counts for s in ("failed", "cancelled", "rejected", "held")):
                raise RuntimeError(f"jobs ended badly: {counts}")
    raise RuntimeError(f"jobs not done after {JOB_TIMEOUT_S:.0f} s")


def batch_sizes(service: Stack, count: int) -> dict[str, float]:
    """Per stage, the mean number of jobs in the library call each of the last `count` jobs
    ran in (their run records' batch_jobs)."""
    sessions = make_sessionmaker(make_engine(service.settings))
    with sessions() as session:
        rows = session.scalars(
            select(Job.stage_runs).order_by(Job.created_at.desc()).limit(count)
        ).all()  # fmt: skip
    out = {}
    for stage in ("prior", "decoder", "upsampler"):
        sizes = [runs[stage]["batch_jobs"] for runs in rows if runs and stage in runs]
        if sizes:
            out[stage] = round(sum(sizes) / len(sizes), 2)
    return out


def _trees(text: str) -> dict[str, Path]:
    trees = {}
    for item in text.split(","):
        name, sep, folder = item.partition("=")
        path = Path(folder).resolve()
        if not sep or not name or not (path / "shared" / "cli.py").is_file():
            raise argparse.ArgumentTypeError(
                f"--trees item {item!r} is not NAME=DIR with DIR a copy of the repository"
            )
        trees[name] = path
    return trees


def _pipelines(text: str) -> list[int | None]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--pipeline {text!r} must list values of 1 or more")
    return list(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--steps", type=StageSteps.parse, default=StageSteps(10, 10, 4))
    parser.add_argument("--modes", default="embedded,distributed")
    parser.add_argument("--batch", default="1,8", help="UNCLIP_BATCH__MAX values to run")
    parser.add_argument("--one-step", type=int, default=0, help="also N 1/1/1 jobs, embedded")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (bare run)")
    parser.add_argument("--repeat", type=int, default=1, help="run every configuration N times")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--task-level", type=int, default=0,
                        help="also N rounds of the stage tasks in process vs bare")  # fmt: skip
    parser.add_argument("--warm-rounds", type=int, default=0,
                        help="untimed rounds of the same jobs first, service and bare")  # fmt: skip
    parser.add_argument("--family", type=Path, default=None,
                        help="a family folder for service and bare (default: the tiny "
                        "reference family)")  # fmt: skip
    parser.add_argument("--trees", type=_trees, default={"this": REPO},
                        help="NAME=DIR,...: the service from each source tree in turn")  # fmt: skip
    parser.add_argument("--pipeline", type=_pipelines, default=[None],
                        help="UNCLIP_PIPELINE values to run in turn, e.g. 1,2 (default: "
                        "the environment's)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.task_level:
        from bench.service_task_level import task_level  # imports this module

        print(
            json.dumps(task_level(args.jobs, args.steps, args.task_level, args.warm_rounds)),
            flush=True,
        )
    bodies = [job_body(i, args.steps) for i in range(args.jobs)]
    batches = [int(b) for b in args.batch.split(",") if b]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-family-") as family_dir:
        family = args.family.resolve() if args.family else Path(family_dir)
        if not args.family:
            save_reference_family(family)
        for repeat in range(args.repeat):
            for mode in [m for m in args.modes.split(",") if m]:
                # Odd repeats run the batch sizes in reverse, so neither always goes first.
                for batch in batches if repeat % 2 == 0 else batches[::-1]:
                    for row in measure(mode, batch, family, bodies, args, repeat):
                        rows.append({"repeat": repeat, **row})
                        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps(summarise(rows), indent=1))
    if args.json:
        args.json.write_text(
            json.dumps({"argv": sys.argv[1:], "rows": rows, "summary": summarise(rows)}, indent=1)
            + "\n"
        )


def measure(mode: str, batch: int, family: Path, bodies: list[dict[str, Any]],
            args: argparse.Namespace, repeat: int = 0) -> list[dict[str, Any]]:  # fmt: skip
    """One service configuration from each source tree (in turn, the order reversed on odd
    repeats), with the bare library measured before, between and after them (the machine is
    shared: only figures taken together compare); one row per tree."""
    variants = [(name, tree, p) for name, tree in args.trees.items() for p in args.pipeline]
    variants = variants if repeat % 2 == 0 else variants[::-1]
    bares = [bare_rate(len(bodies), args.steps, batch, args.warm_rounds, args.family)]
    runs = []
    for name, tree, pipeline in variants:
        run: dict[str, Any] = {"mode": mode, "batch_max": batch, "jobs": len(bodies)}
        if len(args.trees) > 1:
            run["tree"] = name
        if len(args.pipeline) > 1:
            run["pipeline"] = pipeline
        with stack(mode, family, batch, tree, pipeline) as service:
            for r in range(args.warm_rounds):  # other prompts and seeds, the same batch shapes
                run_jobs(service, [job_body(30_000 + 1000 * r + i, args.steps)
                                   for i in range(len(bodies))])  # fmt: skip
            cpu = tree_cpu_s(service.pids)
            run["wall"] = run_jobs(service, bodies)
            run["cpu"] = tree_cpu_s(service.pids) - cpu
            run["load_average"] = [round(x, 2) for x in os.getloadavg()]
            run["mean_batch_jobs"] = batch_sizes(service, len(bodies))
            if args.one_step and mode == "embedded" and batch == 1:
                one = [job_body(20_000 + i, StageSteps(1, 1, 1)) for i in range(args.one_step)]
                run[f"{args.one_step}_one_step_jobs_s"] = round(run_jobs(service, one), 2)
        bares.append(bare_rate(len(bodies), args.steps, batch, args.warm_rounds, args.family))
        runs.append(run)
    return [_row(run, bares[i], bares[i + 1], len(bodies)) for i, run in enumerate(runs)]


def _row(run: dict[str, Any], before: Rate, after: Rate, jobs: int) -> dict[str, Any]:
    """A service run beside the bare figures taken just before and just after it."""
    wall, cpu = run.pop("wall"), run.pop("cpu")
    bare = (before.images_per_s + after.images_per_s) / 2
    bare_cpu = (before.cpu_s_per_image + after.cpu_s_per_image) / 2
    load = run.pop("load_average")
    run.update(
        service_images_per_s=round(jobs / wall, 3),
        bare_images_per_s=round(bare, 3),
        bare_spread=[round(before.images_per_s, 3), round(after.images_per_s, 3)],
        service_vs_bare=round(jobs / wall / bare, 2),
        # CPU seconds per image: the service's processes (API, worker, and in embedded mode
        # the sweeper and webhook dispatcher; not the PostgreSQL or Redis servers) against
        # the bare library's own process. Load on the machine moves these far less.
        service_cpu_s_per_image=round(cpu / jobs, 3),
        bare_cpu_s_per_image=round(bare_cpu, 3),
        cpu_bare_vs_service=round(bare_cpu * jobs / cpu, 2) if cpu > 0 else None,
        load_average=load,
    )
    return run


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats: service / bare per (tree,) mode and batch size, and
    batch-8 / batch-1 service images/s per (tree,) mode (each pair from the same repeat)."""
    out: dict[str, Any] = {}

    def label(row: dict[str, Any]) -> str:
        parts = [row["tree"]] if "tree" in row else []
        parts += [f"pipeline{row['pipeline']}"] if "pipeline" in row else []
        return "_".join([*parts, str(row["mode"])])

    for key in sorted({(label(r), r["batch_max"]) for r in rows}):
        mine = [r for r in rows if (label(r), r["batch_max"]) == key]
        name = f"{key[0]}_batch{key[1]}"
        out[f"{name}_vs_bare"] = round(_median([r["service_vs_bare"] for r in mine]), 2)
        cpu = [r["cpu_bare_vs_service"] for r in mine if r["cpu_bare_vs_service"] is not None]
        if cpu:
            out[f"{name}_cpu_bare_vs_service"] = round(_median(cpu), 2)
        per_image = [r["service_cpu_s_per_image"] for r in mine]
        out[f"{name}_service_cpu_s_per_image"] = round(_median(per_image), 3)
    for mode in sorted({label(row) for row in rows}):
        pairs = []
        for repeat in sorted({r["repeat"] for r in rows}):
            by_batch = {r["batch_max"]: r["service_images_per_s"] for r in rows
                        if label(r) == mode and r["repeat"] == repeat}  # fmt: skip
            if 1 in by_batch and 8 in by_batch:
                pairs.append(by_batch[8] / by_batch[1])
        if pairs:
            out[f"{mode}_batch8_vs_batch1"] = round(_median(pairs), 2)
    return out


if __name__ == "__main__":
    main()
