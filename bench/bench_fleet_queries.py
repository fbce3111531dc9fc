"""Cost of the fleet view's and /metrics' database reads on a large PostgreSQL jobs table.

    .venv/bin/python bench/bench_fleet_queries.py [--jobs 200000] [--attempts 300000]

Creates a scratch database on 127.0.0.1:5432 (dropped after), fills it with mostly finished
jobs and a few waiting ones, and times stage_loads (queue depth), stage_throughput and
count_workers, then prints PostgreSQL's plan of the queue-depth query.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, text

from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.db.queue_stats import stage_loads, stage_throughput
from shared.db.workers import count_workers
from shared.settings import Settings

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
REPEATS = 20


def _fill(engine: Engine, jobs: int, attempts: int) -> None:
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO jobs (id, kind, status, prompt, n, size, seed, sampler, steps_prior, "
            "steps_decoder, steps_upsampler, prior_guidance, decoder_guidance, attempt, progress,"
            " created_at, updated_at) SELECT gen_random_uuid()::text, 'generate', CASE WHEN "
            "g % 4000 = 0 THEN 'queued' WHEN g % 5000 = 1 THEN 'decoder' ELSE 'succeeded' END, "
            "'p', 1, '64x64', g, 'ddim', 2, 2, 2, 1, 1, 3, 1.0, "
            "now() - (g || ' seconds')::interval, now() FROM generate_series(1, :n) g"
        ), {"n": jobs})  # fmt: skip
        conn.execute(text(
            "INSERT INTO stage_attempts (id, job_id, stage, attempt, status, started_at, "
            "finished_at) SELECT gen_random_uuid()::text, (SELECT id FROM jobs LIMIT 1), "
            "(ARRAY['prior','decoder','upsampler'])[1 + g % 3], g, 'succeeded', "
            "now() - (g || ' seconds')::interval, now() - (g || ' seconds')::interval "
            "FROM generate_series(1, :n) g"
        ), {"n": attempts})  # fmt: skip
        conn.execute(text("ANALYZE"))


def _time(engine: Engine, read: Callable[..., Any], **kwargs: Any) -> float:
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        read(session=session, **kwargs)  # warm the statement cache
        start = time.perf_counter()
        for _ in range(REPEATS):
            read(session=session, **kwargs)
        return (time.perf_counter() - start) / REPEATS * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--attempts", type=int, default=300_000)
    args = parser.parse_args()
    name = f"unclip_bench_fleet_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1/{name}"
        settings = Settings(data_dir=Path("var/bench-fleet"), database_url=url)
        upgrade(settings)
        engine = make_engine(settings)
        _fill(engine, args.jobs, args.attempts)
        print(f"{args.jobs} jobs, {args.attempts} stage attempts; mean of {REPEATS} calls:")
        for label, read, kwargs in (
            ("stage_loads (queue depth)", stage_loads, {"stale_after_s": 120.0}),
            ("stage_throughput (300 s)", stage_throughput, {"window_s": 300.0}),
            ("count_workers", count_workers, {"stale_after_s": 120.0}),
        ):
            print(f"  {label:<28} {_time(engine, read, **kwargs):7.2f} ms")
        with engine.connect() as conn:
            plan = conn.execute(text(
                "EXPLAIN ANALYZE SELECT status, count(*) FROM jobs WHERE status IN "
                "('queued', 'prior', 'decoder', 'upsampler') GROUP BY status"
            )).scalars()  # fmt: skip
            print("\n".join(plan))
        engine.dispose()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
