"""The 64 -> 256 upsampler against bicubic: PSNR and edge width on held-out renders, and speed.

Usage, from the repository root:
    .venv/bin/python -m bench.upsampler256_edges [--run runs/up256/upsampler256] \
        [--family models/shapes] [--n 48] [--steps 1,4] [--speed-prompts 4] \
        [--shapeeval-prompts 250 [--shapeeval-sides 64,256]] \
        [--out docs/bench/upsampler256.json]

Without --run the family's own 64 -> 256 upsampler is measured. Two inputs, both from
held-out scenes (seed 10,000,019, which no training step draws):
- "clean": the generator's 64 px render, upsampled to 256 by the net and by bicubic;
- "cascade": the generator's 32 px render through the family's first upsampler (32 -> 64,
  4 DDIM steps), then to 256 by the net and by bicubic: what a request at 256 px gets from a
  perfect decoder.
Edge width: worker/shapes/edge_width.py (mean 10-90% rise across the object's boundary, px at
256, one-object scenes with enough contrast). Speed: render() at size 64 and at size 256
interleaved, generate requests of 4 images at the family's defaults. With
--shapeeval-prompts N, ShapeEval's generation section (its first N prompts, N = 250 for all)
at the family's defaults read by the analyser at 64 px and at 256 px: the same seeds, so the
256 px images are the 64 px ones through the 64 -> 256 upsampler.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from worker.evaluation.prompts import prompt_set
from worker.evaluation.scoring import ATTRIBUTES
from worker.evaluation.sections import run_generation
from worker.evaluation.shapeeval import family_settings
from worker.training.data import SceneSource, to_model_range
from worker.training.train_upsampler import load_trained_upsampler
from worker.training.upsampler_eval import (
    HELD_SEED,
    bicubic,
    edge_width_of,
    psnr,
    sample_upsampler,
)
from worker.unclip.family import Family, load_family
from worker.unclip.nets import UpsamplerPair
from worker.unclip.render import render
from worker.unclip.render_spec import RenderSpec

PROMPTS = (
    "a small red star at the top left",
    "a large blue circle in the centre",
    "a green triangle at the bottom right on a white background",
    "a yellow square to the left of a purple cross",
)


def _row(images: torch.Tensor, target: torch.Tensor, scenes: list[Any]) -> dict[str, float]:
    return {
        "psnr_db": round(psnr(images, target), 2),
        "edge_px": round(edge_width_of(images, scenes).width_px, 3),
    }


def quality(family: Family, pair: UpsamplerPair, n: int, steps: list[int]) -> dict[str, Any]:
    """PSNR and edge width of the net (at each step count) and of bicubic, on both inputs."""
    batch = SceneSource(n, sizes=(256, 64, 32), seed=HELD_SEED).batch(0)
    target = to_model_range(batch.renders[256])
    clean = to_model_range(batch.renders[64])
    first = sample_upsampler(family.upsampler, to_model_range(batch.renders[32]), steps=4)
    out: dict[str, Any] = {
        "scenes": n,
        "true_edge_px": round(edge_width_of(target, batch.scenes).width_px, 3),
    }
    for name, low in (("clean", clean), ("cascade", first)):
        rows = {"bicubic": _row(bicubic(low, 256), target, batch.scenes)}
        for k in steps:
            rows[f"net_{k}_steps"] = _row(
                sample_upsampler(pair, low, steps=k), target, batch.scenes
            )
        out[name] = rows
    return out


def speed(family: Family, prompts: int, rounds: int = 2) -> dict[str, float]:
    """Seconds per image of render() at 64 and at 256 px, interleaved round by round."""
    d = family.defaults
    times: dict[int, list[float]] = {64: [], 256: []}
    for r in range(rounds):
        for side in (64, 256):
            specs = [RenderSpec(kind="generate", prompt=PROMPTS[i % len(PROMPTS)], n=4,
                                seed=r * 10 + i, steps=d.steps, sampler=d.sampler,
                                prior_guidance=d.prior_guidance,
                                decoder_guidance=d.decoder_guidance, size=side)
                     for i in range(prompts)]  # fmt: skip
            start = time.perf_counter()
            images = render(family, specs)
            times[side].append((time.perf_counter() - start) / (4 * prompts))
            assert images[0][0].size == (side, side)
    return {f"s_per_image_{side}": round(statistics.median(v), 3) for side, v in times.items()}


def shapeeval_at_sizes(family: Family, prompts: int, sides: tuple[int, ...] = (64, 256),
                       batch_size: int = 16) -> dict[str, Any]:
    """ShapeEval's generation figures (one object, two objects) at each output side."""
    settings = family_settings(family.defaults, batch_size)
    chosen = prompt_set(prompts)  # a prefix samples every group; 250 or more: all
    out: dict[str, Any] = {"prompts": len(chosen)}
    for side in sides:
        def draw(specs: Sequence[RenderSpec], side: int = side) -> list[list[Any]]:
            return render(family, [dataclasses.replace(s, size=side) for s in specs])

        result, images = run_generation(draw, chosen, settings)
        assert images[0].shape[0] == family.output_side(side), images[0].shape  # read native
        g = dataclasses.asdict(result)
        out[f"{side}px"] = {
            "side_read": images[0].shape[0],
            "one_object": {k: g["single_all"][k] for k in ("n", *ATTRIBUTES, "all_right")},
            "two_objects": {k: g["two_all"][k] for k in ("n", "both_present", "all_right")},
            "seconds_per_image": round(g["seconds_per_image"], 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", type=Path, default=Path("models/shapes"))
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        help="a training stage folder (upsampler256) to measure instead",
    )
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--steps", default="1,4")
    parser.add_argument("--speed-prompts", type=int, default=4, help="0: no speed rows")
    parser.add_argument("--shapeeval-prompts", type=int, default=0,
                        help="ShapeEval generation prompts read at 64 and at 256 px (0: none)")
    parser.add_argument("--shapeeval-sides", default="64,256",
                        help="output sides of the ShapeEval rows, e.g. 256")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    family = load_family(args.family)
    if args.run is not None:
        family = dataclasses.replace(family, cascade=(load_trained_upsampler(args.run),))
    if not family.cascade:
        raise SystemExit(f"{args.family} has no 64 -> 256 upsampler; pass --run STAGE_DIR")
    pair = family.cascade[0]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    report: dict[str, Any] = {
        "started": started,
        "load_before": os.getloadavg()[0],
        "threads": args.threads,
        "upsampler": str(args.run or args.family),
        "quality": quality(family, pair, args.n, [int(s) for s in args.steps.split(",")]),
    }
    if args.speed_prompts:
        report["speed"] = speed(family, args.speed_prompts)
    if args.shapeeval_prompts:
        sides = tuple(int(v) for v in args.shapeeval_sides.split(","))
        report["shapeeval"] = shapeeval_at_sizes(family, args.shapeeval_prompts, sides)
    report["load_after"] = os.getloadavg()[0]
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
