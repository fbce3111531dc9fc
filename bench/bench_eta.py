"""How good is a queued job's ETA? Predicted `eta_s` at submission against what happened.

Usage, from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_eta [--jobs 8] [--steps 6,6,2]
        [--rounds 2] [--json OUT]

A burst of `--jobs` jobs goes into `unclip up` (embedded mode, the tiny reference family,
one worker) at once, `--rounds` times; the first round starts with no stage measured yet
(the ETA then assumes 10 s per stage), later rounds use the stage times measured before.
Each job's `eta_s` from its POST answer is compared with the seconds until it succeeded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_service import stack
from worker.unclip.reference_family import save_reference_family
from worker.unclip.render_spec import StageSteps

POLL_S = 0.1


def burst(url: str, jobs: int, steps: StageSteps, round_: int) -> list[dict[str, float]]:
    """Submit `jobs` at once; per job its predicted ETA, actual time and position."""
    body = {
        "kind": "generate",
        "size": "64x64",
        "steps": {"prior": steps.prior, "decoder": steps.decoder, "upsampler": steps.upsampler},
    }
    rows: dict[str, dict[str, float]] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(jobs):
            sent = time.monotonic()
            job = client.post("/v1/jobs", json={**body, "prompt": f"a red circle {round_}-{i}",
                                                "seed": i}).json()  # fmt: skip
            rows[job["id"]] = {"sent": sent, "eta_s": float(job["eta_s"] or 0.0),
                               "position": float(job["queue_position"] or 0)}  # fmt: skip
        pending = set(rows)
        while pending:
            for job_id in list(pending):
                job = client.get(f"/v1/jobs/{job_id}").json()
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    rows[job_id]["actual_s"] = time.monotonic() - rows[job_id]["sent"]
                    pending.discard(job_id)
            time.sleep(POLL_S)
    return list(rows.values())


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    errors = [r["eta_s"] - r["actual_s"] for r in rows]
    ratios = [r["eta_s"] / r["actual_s"] for r in rows if r["actual_s"] > 0]
    return {
        "jobs": len(rows),
        "median_abs_error_s": round(statistics.median(abs(e) for e in errors), 2),
        "median_error_s": round(statistics.median(errors), 2),
        "median_eta_over_actual": round(statistics.median(ratios), 2),
        "worst_eta_over_actual": round(max(ratios, key=lambda r: abs(r - 1)), 2),
        "mean_actual_s": round(statistics.fmean(r["actual_s"] for r in rows), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=StageSteps.parse, default=StageSteps(6, 6, 2))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result: dict[str, Any] = {"command": "python -m bench.bench_eta", "rounds": []}
    with tempfile.TemporaryDirectory(prefix="bench-eta-family-") as tmp:
        family = Path(tmp)
        save_reference_family(family)
        with stack("embedded", family, batch=1) as service:
            for round_ in range(args.rounds):
                rows = burst(service.url, args.jobs, args.steps, round_)
                result["rounds"].append({"round": round_, **summary(rows), "per_job": rows})
                print(json.dumps({"round": round_, **summary(rows)}), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
