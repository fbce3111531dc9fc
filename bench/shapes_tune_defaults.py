"""Pick a family's default sampler settings on a tuning prompt set that ShapeEval never scores.

    python -m bench.shapes_tune_defaults --family models/shapes --prompts 48 \
        --setting 10,10,4,ddim,4,8 --setting 10,10,4,ddim,2,4

Each --setting is prior_steps,decoder_steps,upsampler_steps,sampler,prior_guidance,
decoder_guidance[,prior_candidates] (the family's own prior_candidates when left
out). Prompts come from ShapeEval's generator with another seed (TUNE_SEED), so the
chosen defaults are not fitted to the prompts that ShapeEval reports on.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from functools import partial

import torch

from worker.evaluation.prompts import prompt_set
from worker.evaluation.sections import EvalSettings, run_generation
from worker.unclip.family import load_family
from worker.unclip.render import render
from worker.unclip.render_spec import StageSteps

TUNE_SEED = 777


@dataclass(frozen=True)
class Setting:
    sampling: EvalSettings
    prior_candidates: int | None  # None: the family's own


def parse_setting(text: str) -> Setting:
    parts = text.split(",")
    if len(parts) not in (6, 7):
        raise argparse.ArgumentTypeError(
            f"--setting needs prior,decoder,upsampler steps, sampler, prior and decoder "
            f"guidance and optionally prior candidates (6 or 7 values), got {text!r}")
    p, d, u = (int(x) for x in parts[:3])
    k = int(parts[6]) if len(parts) == 7 else None
    if k is not None and k < 1:
        raise argparse.ArgumentTypeError(f"prior candidates must be >= 1, got {k}")
    sampling = EvalSettings(steps=StageSteps(p, d, u), sampler=parts[3],
                            prior_guidance=float(parts[4]), decoder_guidance=float(parts[5]))
    return Setting(sampling, k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="models/shapes")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--setting", type=parse_setting, action="append", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    family = load_family(args.family)
    prompts = prompt_set(args.prompts, seed=TUNE_SEED)
    own_k = family.defaults.prior_candidates
    for setting in args.setting:
        settings, k = setting.sampling, setting.prior_candidates or own_k
        family.defaults = replace(family.defaults, prior_candidates=k)
        start = time.perf_counter()
        result, _ = run_generation(partial(render, family), prompts, settings)
        single, two = result.single_all, result.two_all
        row = {
            "steps": [settings.steps.prior, settings.steps.decoder, settings.steps.upsampler],
            "sampler": settings.sampler,
            "prior_guidance": settings.prior_guidance,
            "decoder_guidance": settings.decoder_guidance,
            "prior_candidates": k,
            "single": {k: getattr(single, k) for k in ("colour", "shape", "position", "size")},
            "two_all_right": two.all_right,
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
