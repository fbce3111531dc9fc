"""In-process stage tasks against the bare library: `bench/bench_service.py --task-level N`.

The three stage tasks run in this process (SQLite, local storage, messages handed over in a
list: no HTTP and no broker hops), so their own cost shows without the API's and Celery's.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_service import Rate, _median, bare_rate, job_body
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.db.models import Job
from shared.settings import Settings
from worker.unclip.reference_family import save_reference_family
from worker.unclip.render_spec import StageSteps


def _no_check(*args: Any, **kwargs: Any) -> list[Any]:
    """Stands in for a moderation check in the task-level "moderation removed" rows (no
    verdicts to record)."""
    return []


def task_level(jobs: int, steps: StageSteps, repeats: int, warm_rounds: int = 0) -> dict[str, Any]:
    """The three stage tasks in this process (SQLite, local storage, messages as a list: no
    HTTP and no broker hops) against the bare library, interleaved `repeats` times per batch
    size: bare, tasks with moderation, tasks with the moderation checks removed (for
    attribution only; the service always runs them). Figures of a round are seconds apart."""
    from celery import Celery

    from shared.settings import Batch
    from shared.storage.local import LocalStorage
    from worker.tasks import base, prior_task, upsampler_task
    from worker.tasks.app import register_tasks
    from worker.tasks.base import RenderTask, Resources

    gates = vars(prior_task), vars(upsampler_task)  # the stage tasks' own names of the checks
    checks = (gates[0]["check_prompt_and_input"], gates[1]["check_outputs"])
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        data_dir = Path(tmp)
        save_reference_family(data_dir / "family")
        settings = Settings(data_dir=data_dir, family=data_dir / "family", device="cpu")
        upgrade(settings)
        sessions = make_sessionmaker(make_engine(settings))
        storage = LocalStorage(data_dir / "storage")
        queue: list[tuple[str, str]] = []
        base.enqueue_stage = lambda app, job_id, stage, attempt, **_: queue.append(  # type: ignore[assignment,attr-defined]
            (job_id, str(stage))
        )
        app = register_tasks(Celery("bench-tasks", set_as_current=False))

        def run(batch: int, offset: int, moderation: bool) -> Rate:
            RenderTask._resources = Resources(
                settings.model_copy(update={"batch": Batch(max=batch)}), sessions, storage
            )
            gates[0]["check_prompt_and_input"] = checks[0] if moderation else _no_check
            gates[1]["check_outputs"] = checks[1] if moderation else _no_check
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
            start, cpu = time.perf_counter(), time.process_time()
            while queue:
                job_id, stage = queue.pop(0)
                app.tasks[f"render.{stage}"].apply(kwargs={"job_id": job_id}).get()
            return Rate(jobs / (time.perf_counter() - start), (time.process_time() - cpu) / jobs)

        try:
            run(1, 90_000, True)  # warm-up: loads the family and the moderation checkers
            for r in range(warm_rounds):  # and the batch shapes of both sizes
                run(1, 80_000 + 1000 * r, True)
                run(8, 70_000 + 1000 * r, True)
            for r in range(repeats):
                for batch in (1, 8) if r % 2 == 0 else (8, 1):
                    offset = 100_000 * (r + 1) + 50_000 * (batch == 8)
                    bare = bare_rate(jobs, steps, batch, warm_rounds)
                    on, off = run(batch, offset, True), run(batch, offset + 10_000, False)
                    rows.append({"repeat": r, "batch_max": batch, "bare": bare, "on": on,
                                 "off": off})  # fmt: skip
        finally:
            gates[0]["check_prompt_and_input"], gates[1]["check_outputs"] = checks
    return _task_level_summary(rows)


def _task_level_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rows": []}
    for row in rows:
        bare, on, off = row["bare"], row["on"], row["off"]
        out["rows"].append({
            "repeat": row["repeat"], "batch_max": row["batch_max"],
            "images_per_s": {"bare": round(bare.images_per_s, 3),
                             "tasks": round(on.images_per_s, 3),
                             "tasks_no_moderation": round(off.images_per_s, 3)},
            "cpu_s_per_image": {"bare": round(bare.cpu_s_per_image, 3),
                                "tasks": round(on.cpu_s_per_image, 3),
                                "tasks_no_moderation": round(off.cpu_s_per_image, 3)},
            "tasks_vs_bare": round(on.images_per_s / bare.images_per_s, 2),
            "tasks_no_moderation_vs_bare": round(off.images_per_s / bare.images_per_s, 2),
        })  # fmt: skip
    for batch in (1, 8):
        mine = [r for r in out["rows"] if r["batch_max"] == batch]
        for key in ("tasks_vs_bare", "tasks_no_moderation_vs_bare"):
            out[f"batch{batch}_{key}_median"] = round(_median([r[key] for r in mine]), 2)
    pairs: dict[int, dict[int, float]] = {}
    for r in out["rows"]:
        pairs.setdefault(r["repeat"], {})[r["batch_max"]] = r["images_per_s"]["tasks"]
    ratios = [p[8] / p[1] for p in pairs.values() if 1 in p and 8 in p]
    if ratios:
        out["tasks_batch8_vs_batch1_median"] = round(_median(ratios), 2)
    return out
