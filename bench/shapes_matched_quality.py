"""ShapeEval generation scores and interleaved render times of sampler settings of one family.

    python -m bench.shapes_matched_quality --family models/shapes --prompts 128 \
        --setting 10,10,4,ddim,4,5 --setting 5,5,4,dpmpp_2m,4,5 \
        --setting 25,25,7,ddpm,4,5 [--time-prompts 16 --repeats 3] [--json OUT]

Settings are bench/shapes_tune_defaults.py's (steps, sampler, prior and decoder guidance,
optional prior candidates). Phase 1 scores each setting on the first --prompts prompts of
ShapeEval's own prompt set (seeds = prompt indices, so every setting sees the same cases):
one-object colour / shape / size / position and two objects all right. Phase 2 times one
render call of the first --time-prompts prompts (one request each, as ShapeEval batches
them) per setting, the settings alternating, --repeats rounds after a warm-up; the median
wall and process-CPU seconds per image are reported. The first setting is the reference
that the others are compared with ("within 1 point": no attribute more than 1 point lower).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from bench.shapes_tune_defaults import Setting, parse_setting
from worker.evaluation.prompts import prompt_set
from worker.evaluation.sections import generate_specs, run_generation
from worker.unclip.family import Family, load_family
from worker.unclip.render import render

ATTRIBUTES = ("colour", "shape", "size", "position")


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def _with_candidates(family: Family, setting: Setting, own: int) -> None:
    family.defaults = replace(family.defaults, prior_candidates=setting.prior_candidates or own)


def _label(setting: Setting, k: int) -> str:
    s = setting.sampling
    steps = f"{s.steps.prior}/{s.steps.decoder}/{s.steps.upsampler}"
    return f"{s.sampler} {steps} g{s.prior_guidance:g}/{s.decoder_guidance:g} k{k}"


def score(family: Family, settings: list[Setting], prompts: int) -> list[dict[str, Any]]:
    """Phase 1: ShapeEval's generation scores (percent) of each setting."""
    own, cases, rows = family.defaults.prior_candidates, prompt_set(prompts), []
    for setting in settings:
        _with_candidates(family, setting, own)
        start = time.perf_counter()
        result, _ = run_generation(partial(render, family), cases, setting.sampling)
        single, two = result.single_all, result.two_all
        row = {
            "setting": _label(setting, family.defaults.prior_candidates),
            **{a: _pct(getattr(single, a)) for a in ATTRIBUTES},
            "two_all_right": _pct(two.all_right),
            "n_single": single.n,
            "n_two": two.n,
            "scoring_wall_s": round(time.perf_counter() - start, 1),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    family.defaults = replace(family.defaults, prior_candidates=own)
    return rows


def timing(
    family: Family, settings: list[Setting], prompts: int, repeats: int
) -> list[dict[str, Any]]:
    """Phase 2: median seconds per image of each setting, the settings interleaved."""
    own, cases = family.defaults.prior_candidates, prompt_set(prompts)
    specs = [generate_specs(cases, s.sampling) for s in settings]

    def run(i: int) -> tuple[float, float]:
        _with_candidates(family, settings[i], own)
        start, start_cpu = time.perf_counter(), time.process_time()
        render(family, specs[i])
        return time.perf_counter() - start, time.process_time() - start_cpu

    for i in range(len(settings)):
        run(i)  # warm-up
    wall: list[list[float]] = [[] for _ in settings]
    cpu: list[list[float]] = [[] for _ in settings]
    for _ in range(repeats):
        for i in range(len(settings)):
            w, c = run(i)
            wall[i].append(w)
            cpu[i].append(c)
    family.defaults = replace(family.defaults, prior_candidates=own)
    rows = []
    for i, setting in enumerate(settings):
        k = setting.prior_candidates or own
        row = {
            "setting": _label(setting, k),
            "wall_s_per_image": round(statistics.median(wall[i]) / prompts, 4),
            "cpu_s_per_image": round(statistics.median(cpu[i]) / prompts, 4),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="models/shapes")
    parser.add_argument("--prompts", type=int, default=250, help="ShapeEval prompts to score")
    parser.add_argument("--setting", type=parse_setting, action="append", required=True)
    parser.add_argument("--time-prompts", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-scores", action="store_true", help="phase 2 only")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    family = load_family(args.family)
    family.frozen_graphs_trace_after_calls = 0  # steady state: trace on first use
    with torch.inference_mode():
        scores = [] if args.skip_scores else score(family, args.setting, args.prompts)
        times = timing(family, args.setting, args.time_prompts, args.repeats)
    if args.json:
        result = {
            "command": "python -m bench.shapes_matched_quality " + " ".join(sys.argv[1:]),
            "scores": scores,
            "times": times,
            "threads": torch.get_num_threads(),
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
