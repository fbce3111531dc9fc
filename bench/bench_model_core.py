"""Time the model core: seconds per image and images/s by batch size through render().

Usage, from the repository root:
    .venv/bin/python -m bench.bench_model_core [--threads 2] [--repeats 5] [--batches 1,2,4,8]
    .venv/bin/python -m bench.bench_model_core --karlo-full --device cuda --dtype bf16 \
        --steps 25,25,7 --batches 1,4,8 --vs-diffusers  # full Karlo sizes, random weights (GPU)
    .venv/bin/python -m bench.bench_model_core --karlo-full --tiny --vs-diffusers \
        --steps 2,2,2 --batches 1 --repeats 1   # the same path at tiny sizes: a CPU smoke run

Default: the reference family (worker/unclip/reference_family.py: 32 px decoder, 32 -> 64 px
upsampler) on the CPU in float32, one generate request of n images (batch n) at 10/10/4 steps
with DDIM, guidance 4/8 and best-of-2 prior candidates. Each batch is run once to warm up,
then `--repeats` times; the median wall time is reported, with the spread (min-max).
--vs-diffusers also times diffusers' UnCLIPPipeline at the family's sizes against our DDPM
render, interleaved (bench/diffusers_reference/bench_vs_diffusers.py compare_with_diffusers).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

from worker.unclip.family import Family, FamilyDefaults
from worker.unclip.reference_family import make_reference_family
from worker.unclip.render import render
from worker.unclip.render_spec import RenderSpec, StageSteps

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def karlo_full_family(device: str, dtype: torch.dtype, seed: int = 0, tiny: bool = False) -> Family:
    """Karlo v1 alpha sizes (ViT-L/14 CLIP, 1B prior, 0.9B decoder, 2 x 0.7B SR), random weights.

    tiny: the same layout at bench_vs_karlo's tiny sizes, so the path runs on a CPU.
    """
    from worker.unclip.clip_encoder import ClipEncoder
    from worker.unclip.karlo_configs import (
        karlo_clip_config,
        karlo_decoder_config,
        karlo_prior_config,
        karlo_upsampler_config,
    )
    from worker.unclip.nets import DecoderNet, PriorNet, UpsamplerPair

    configs = (karlo_clip_config(), karlo_prior_config(), karlo_decoder_config(),
               karlo_upsampler_config())  # fmt: skip
    if tiny:
        from bench.karlo_reference.bench_vs_karlo import SIZES, vs_karlo_yaml
        from worker.unclip.karlo_configs import config_from_karlo_yaml
        from worker.unclip.reference_family import reference_configs

        yaml = vs_karlo_yaml()
        configs = (reference_configs()[0], config_from_karlo_yaml(yaml["prior"]),  # type: ignore[assignment]
                   config_from_karlo_yaml(yaml["decoder"]),
                   config_from_karlo_yaml(yaml["upsampler"], upsampler_sizes=SIZES))  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = ClipEncoder.build(configs[0], device=device, dtype=dtype)
        with torch.device(device):  # initialise the big nets on the device directly
            prior = PriorNet(configs[1])  # type: ignore[arg-type]
            decoder = DecoderNet(configs[2])  # type: ignore[arg-type]
            upsampler = UpsamplerPair(configs[3])  # type: ignore[arg-type]
    dim = prior.cfg.clip_dim
    family = Family(
        name="karlo-tiny-random" if tiny else "karlo-full-random",
        clip=clip,
        prior=prior.eval(),
        prior_mean=torch.zeros(dim),
        prior_std=torch.ones(dim),
        decoder=decoder.eval(),
        upsampler=upsampler.eval(),
        defaults=FamilyDefaults(steps=StageSteps(25, 25, 7)),
    )
    return family.to(device, dtype)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_batch(
    family: Family,
    batch: int,
    steps: StageSteps,
    sampler: str,
    repeats: int,
    device: str,
    reproducible: bool = False,
) -> tuple[list[float], list[float]]:
    """(wall, process CPU) seconds of `repeats` renders of one request of `batch` images.

    After a warm-up. On a shared CPU the CPU seconds are the cost of the render itself; the
    wall seconds add however long the scheduler made the process wait.
    """
    spec = RenderSpec(
        kind="generate",
        prompt="a red cube on a blue ball",
        n=batch,
        seed=0,
        steps=steps,
        sampler=sampler,
        reproducible=reproducible,
    )
    render(family, [spec])
    times, cpu_times = [], []
    for _ in range(repeats):
        _sync(device)
        start, start_cpu = time.perf_counter(), time.process_time()
        render(family, [spec])
        _sync(device)
        cpu_times.append(time.process_time() - start_cpu)
        times.append(time.perf_counter() - start)
    return times, cpu_times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--steps", default="10,10,4", type=StageSteps.parse)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--karlo-full", action="store_true", help="full Karlo sizes, random")
    parser.add_argument("--tiny", action="store_true", help="with --karlo-full: tiny sizes")
    parser.add_argument("--vs-diffusers", action="store_true", help="also time diffusers")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument(
        "--reproducible", action="store_true", help="batch-invariant mode (default: full speed)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    if args.karlo_full:
        family = karlo_full_family(args.device, dtype, tiny=args.tiny)
    else:
        family = make_reference_family(0, device=args.device, dtype=dtype)
    family.frozen_graphs_trace_after_calls = 0  # steady state: trace on first use
    results: dict[str, Any] = {
        "family": family.name,
        "device": args.device,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "steps": list(vars(args.steps).values()),
        "sampler": args.sampler,
        "reproducible": args.reproducible,
        "final_size": family.final_size,
        "batches": {},
    }
    print(
        f"{family.name}: {args.device} {args.dtype}, {torch.get_num_threads()} threads, "
        f"steps {args.steps}, sampler {args.sampler}, {family.final_size} px, "
        f"{'reproducible' if args.reproducible else 'full speed'}"
    )
    base = base_cpu = None
    for batch in (int(b) for b in args.batches.split(",")):
        times, cpu = time_batch(family, batch, args.steps, args.sampler, args.repeats, args.device,
                                args.reproducible)  # fmt: skip
        median, median_cpu = statistics.median(times), statistics.median(cpu)
        per_image, per_image_cpu = median / batch, median_cpu / batch
        base = base or 1.0 / per_image
        base_cpu = base_cpu or 1.0 / per_image_cpu
        results["batches"][batch] = {
            "seconds": times,
            "median_s": median,
            "cpu_seconds": cpu,
            "median_cpu_s": median_cpu,
        }
        print(
            f"batch {batch:>2}: wall {median:7.3f} s ({min(times):.3f}-{max(times):.3f}), "
            f"{per_image:6.3f} s/image, {1 / per_image / base:4.2f}x the first batch's "
            f"images/s | cpu {median_cpu:7.3f} s, {per_image_cpu:6.3f} s/image, "
            f"{1 / per_image_cpu:6.2f} images/s, {1 / per_image_cpu / base_cpu:4.2f}x",
            flush=True,
        )
        if args.vs_diffusers:  # ours with DDPM against diffusers' DDPM pipeline, alternating
            from bench.diffusers_reference.bench_vs_diffusers import compare_with_diffusers

            vs = compare_with_diffusers(family, batch, args.steps, args.repeats, args.device, dtype)
            results["batches"][batch]["vs_diffusers"] = vs
            print(f"batch {batch:>2} vs diffusers (ddpm, wall s/image): {vs}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
