"""Whole renders side by side: our pipeline and diffusers' UnCLIPPipeline at the same sizes.

Usage, from the repository root (needs `pip install diffusers`, see README.md):
    .venv/bin/python -m bench.diffusers_reference.bench_vs_diffusers [--threads 2] \
        [--repeats 5] [--batches 1,4] [--steps 10,10,4] [--configs karlo-tiny,shapes] \
        [--json OUT]

Two configs, sized from ours (diffusers_tiny.py builds the pipeline):
- "karlo-tiny": the tiny Karlo-layout sizes of bench_vs_karlo.py (prior width 64 x 2
  layers, 32 px decoder with attention at 16 and 8 px, 32 -> 64 px SR pair); ours is that
  family with seeded random weights and Karlo's 3-channel decoder.
- "shapes": the shipped models/shapes networks on our side; diffusers gets the same sizes
  with random weights and the closest layout its classes allow (a 3-channel eps decoder,
  one SR network used for the first and the last step, x0 prediction in prior and SR).
Both sides: fp32, DDPM (UnCLIPScheduler; ours "ddpm" with Karlo's evenly spread steps),
the same step counts, guidance 4 (prior) and 8 (decoder), one prior sample per image,
num_images_per_prompt = batch for diffusers and n = batch for ours. Each side encodes the
prompt and the empty prompt with its own CLIP text encoder inside the timed call. Runs
alternate; the median wall and process-CPU seconds per image are reported. --json writes
{"rows": [{"config", "batch", "diffusers_s_per_image", "ours_s_per_image"}]} (wall seconds)
plus "cpu_rows" in CPU seconds and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from bench.diffusers_reference.diffusers_tiny import Sizes, build_pipeline
from bench.karlo_reference.bench_vs_karlo import (
    PROMPT,
    SHAPES_FAMILY,
    SIZES,
    medians,
    ours_render,
    vs_karlo_yaml,
)
from bench.karlo_reference.karlo_tiny import randomise_
from worker.unclip.clip_encoder import ClipEncoder
from worker.unclip.family import Family, FamilyDefaults, load_family
from worker.unclip.karlo_configs import config_from_karlo_yaml
from worker.unclip.nets import DecoderNet, PriorNet, UpsamplerPair
from worker.unclip.reference_family import reference_configs
from worker.unclip.render_spec import StageSteps

CONFIGS = ("karlo-tiny", "shapes")


def tiny_family(seed: int = 0) -> Family:
    """bench_vs_karlo's tiny Karlo-layout family (3-channel decoder), seeded random weights."""
    yaml = vs_karlo_yaml()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = ClipEncoder.build(reference_configs()[0])
    prior = PriorNet(config_from_karlo_yaml(yaml["prior"]))
    decoder = DecoderNet(config_from_karlo_yaml(yaml["decoder"], decoder_in_channels=3))
    upsampler = UpsamplerPair(config_from_karlo_yaml(yaml["upsampler"], upsampler_sizes=SIZES))
    for i, net in enumerate((prior, decoder, upsampler)):
        randomise_(net, torch.Generator().manual_seed(seed + i))
    dim = prior.cfg.clip_dim
    return Family(
        name="vs-diffusers-tiny",
        clip=clip,
        prior=prior.eval(),
        prior_mean=torch.zeros(dim),
        prior_std=torch.ones(dim),
        decoder=decoder.eval(),
        upsampler=upsampler.eval(),
        defaults=FamilyDefaults(prior_candidates=1),
    )


def build_config(name: str) -> tuple[Family, Any]:
    """(our family, diffusers' pipeline at its sizes) for "karlo-tiny" or "shapes"."""
    if name == "karlo-tiny":
        family = tiny_family()
    elif name == "shapes":
        family = load_family(SHAPES_FAMILY)
        family.defaults = replace(family.defaults, prior_candidates=1)
    else:
        raise SystemExit(f"unknown config {name!r}; allowed: {', '.join(CONFIGS)}")
    family.frozen_graphs_trace_after_calls = 0  # steady state: trace on first use
    sizes = Sizes(
        family.clip_config, family.prior_config, family.decoder_config, family.upsampler_config
    )
    return family, build_pipeline(sizes)


def _diffusers(pipe: Any, batch: int, steps: StageSteps) -> Callable[[], Any]:
    def run() -> Any:
        return pipe(
            PROMPT,
            num_images_per_prompt=batch,
            prior_num_inference_steps=steps.prior,
            decoder_num_inference_steps=steps.decoder,
            super_res_num_inference_steps=steps.upsampler,
            generator=torch.Generator().manual_seed(0),
            prior_guidance_scale=4.0,
            decoder_guidance_scale=8.0,
        ).images

    return run


def compare_with_diffusers(
    family: Family, batch: int, steps: StageSteps, repeats: int, device: str, dtype: torch.dtype
) -> dict[str, float]:
    """Median seconds per image of ours (DDPM) and diffusers' pipeline at `family`'s sizes.

    For bench_model_core.py --vs-diffusers: the pipeline gets seeded random weights, is
    moved to `device` and `dtype` like the family, and the two run alternately.
    """
    sizes = Sizes(
        family.clip_config, family.prior_config, family.decoder_config, family.upsampler_config
    )
    pipe = build_pipeline(sizes).to(device=device, dtype=dtype)
    runs = {"diffusers": _diffusers(pipe, batch, steps), "ours": ours_render(family, batch, steps)}

    def synced(fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            out = fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return out

        return run

    own = family.defaults
    family.defaults = replace(own, prior_candidates=1)  # diffusers samples one embedding
    try:
        wall, _ = medians({name: synced(fn) for name, fn in runs.items()}, repeats)
    finally:
        family.defaults = own
    per = {f"{name}_s_per_image": statistics.median(t) / batch for name, t in wall.items()}
    return {**per, "diffusers_over_ours": per["diffusers_s_per_image"] / per["ours_s_per_image"]}


@torch.inference_mode()
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--steps", default="10,10,4", type=StageSteps.parse)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--json", type=Path, default=None, help="write the rows to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import diffusers

    print(
        f"diffusers {diffusers.__version__}, threads {torch.get_num_threads()}, steps "
        f"{args.steps}, ddpm, guidance 4/8, fp32; load {os.getloadavg()[0]:.1f}; "
        "median seconds per image"
    )
    rows: list[dict[str, Any]] = []
    cpu_rows: list[dict[str, Any]] = []
    for name in args.configs.split(","):
        family, pipe = build_config(name)
        for batch in (int(b) for b in args.batches.split(",")):
            runs = {
                "diffusers": _diffusers(pipe, batch, args.steps),
                "ours": ours_render(family, batch, args.steps),
            }
            for kind, times, out in zip(
                ("wall", "cpu"), medians(runs, args.repeats), (rows, cpu_rows), strict=True
            ):
                per = {k: statistics.median(v) / batch for k, v in times.items()}
                out.append(
                    {
                        "config": name,
                        "batch": batch,
                        "diffusers_s_per_image": round(per["diffusers"], 5),
                        "ours_s_per_image": round(per["ours"], 5),
                    }
                )
                print(
                    f"{name} batch {batch} {kind:>4}: diffusers {per['diffusers']:.3f}  ours "
                    f"{per['ours']:.3f} | diffusers/ours {per['diffusers'] / per['ours']:.2f}x",
                    flush=True,
                )
    if args.json:
        result = {
            "rows": rows,
            "cpu_rows": cpu_rows,  # the same, in process CPU seconds per image
            "command": "python -m bench.diffusers_reference.bench_vs_diffusers "
            + " ".join(sys.argv[1:]),
            "diffusers": diffusers.__version__,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "steps": [args.steps.prior, args.steps.decoder, args.steps.upsampler],
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
