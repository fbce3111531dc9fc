"""Model-core speed by mode, dtype and layout: batch 1 against batch N, interleaved in one run.

Usage, from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_model_speed [--threads 1] [--repeats 3]
        [--configs shapes,karlo-tiny] [--batches 1,8] [--json OUT]

Configs: "shapes" (the shipped family, models/shapes, its family.json defaults: DDIM 10/10/4,
best of 4 prior candidates) and "karlo-tiny" (Karlo's layout at bench_vs_karlo's tiny sizes,
random weights, 7-channel decoder, DDIM 10/10/4, best of 2). Per config these variants run:
- fp32: the default, full speed (reproducible off);
- fp32-reproducible: batch-invariant mode (worker/unclip/batch_invariance.py);
- fp32-eager: full speed with the decoder and upsampler calls run eagerly, not as frozen
  graphs (worker/unclip/frozen_graphs.py; what every render ran before they were added);
- bf16: full speed with bfloat16 weights.
Each (variant, batch) is rendered once to warm up; then `--repeats` rounds render every
(variant, batch) in turn, so that load changes hit all alike. Reported: the median process
CPU seconds and wall seconds per image, and per variant batch N's images/s over batch 1's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from worker.unclip.family import Family, FamilyDefaults, load_family
from worker.unclip.render import render
from worker.unclip.render_spec import RenderSpec, StageSteps

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("fp32", "fp32-eager", "fp32-reproducible", "bf16")


def karlo_tiny_family(seed: int = 0) -> Family:
    """Karlo's layout at bench_vs_karlo's tiny sizes (7-channel decoder), random weights."""
    from bench.karlo_reference.bench_vs_karlo import SIZES, vs_karlo_yaml
    from worker.unclip.clip_encoder import ClipEncoder
    from worker.unclip.configs import DecoderConfig, PriorConfig, UpsamplerConfig
    from worker.unclip.karlo_configs import config_from_karlo_yaml
    from worker.unclip.nets import DecoderNet, PriorNet, UpsamplerPair
    from worker.unclip.reference_family import reference_configs

    yaml = vs_karlo_yaml()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip = ClipEncoder.build(reference_configs()[0])
        prior_cfg = config_from_karlo_yaml(yaml["prior"])
        decoder_cfg = config_from_karlo_yaml(yaml["decoder"], decoder_in_channels=7)
        upsampler_cfg = config_from_karlo_yaml(yaml["upsampler"], upsampler_sizes=SIZES)
        assert isinstance(prior_cfg, PriorConfig) and isinstance(decoder_cfg, DecoderConfig)
        assert isinstance(upsampler_cfg, UpsamplerConfig)
        prior, decoder = PriorNet(prior_cfg), DecoderNet(decoder_cfg)
        upsampler = UpsamplerPair(upsampler_cfg)
        for net in (prior, decoder, upsampler):  # zero-initialised output layers would give 0
            for p in net.parameters():
                p.data.normal_(0.0, 0.02)
    dim = prior.cfg.clip_dim
    return Family(
        name="karlo-tiny-random",
        clip=clip,
        prior=prior.eval(),
        prior_mean=torch.zeros(dim),
        prior_std=torch.ones(dim),
        decoder=decoder.eval(),
        upsampler=upsampler.eval(),
        defaults=FamilyDefaults(steps=StageSteps(10, 10, 4), decoder_guidance=8.0),
    )


CONFIGS = ("shapes", "karlo-tiny")


def build(config: str, variant: str) -> Family:
    """The config's family for `variant` (a fresh copy: variants never share modules)."""
    family = load_family(ROOT / "models/shapes") if config == "shapes" else karlo_tiny_family()
    if variant == "bf16":
        family.to("cpu", torch.bfloat16)
    if variant == "fp32-eager":
        family.frozen_graphs = False
    family.frozen_graphs_trace_after_calls = 0  # steady state: trace on first use
    return family


def renderer(family: Family, batch: int, reproducible: bool) -> Callable[[], Any]:
    d = family.defaults
    spec = RenderSpec(kind="generate", prompt="a red circle left of a blue square", n=batch,
                      seed=0, steps=d.steps, sampler=d.sampler, prior_guidance=d.prior_guidance,
                      decoder_guidance=d.decoder_guidance, reproducible=reproducible)  # fmt: skip
    return lambda: render(family, [spec])


def run_config(config: str, batches: list[int], repeats: int) -> dict[str, Any]:
    families = {variant: build(config, variant) for variant in VARIANTS}
    cases = {
        (variant, batch): renderer(family, batch, variant == "fp32-reproducible")
        for variant, family in families.items()
        for batch in batches
    }
    for fn in cases.values():
        fn()  # warm-up
    cpu: dict[tuple[str, int], list[float]] = {key: [] for key in cases}
    wall: dict[tuple[str, int], list[float]] = {key: [] for key in cases}
    for _ in range(repeats):
        for key, fn in cases.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[key].append(time.process_time() - start_cpu)
            wall[key].append(time.perf_counter() - start)
    out: dict[str, Any] = {"family": families["fp32"].name, "variants": {}}
    for variant in VARIANTS:
        rows: dict[str, Any] = {}
        for batch in batches:
            key = (variant, batch)
            rows[str(batch)] = {
                "cpu_s_per_image": statistics.median(cpu[key]) / batch,
                "wall_s_per_image": statistics.median(wall[key]) / batch,
                "cpu_seconds": cpu[key],
                "wall_seconds": wall[key],
            }
        first, last = rows[str(batches[0])], rows[str(batches[-1])]
        rows["batching_cpu"] = first["cpu_s_per_image"] / last["cpu_s_per_image"]
        rows["batching_wall"] = first["wall_s_per_image"] / last["wall_s_per_image"]
        out["variants"][variant] = rows
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", default="shapes,karlo-tiny")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    unknown = [c for c in args.configs.split(",") if c not in CONFIGS]
    if unknown:
        parser.error(f"--configs: unknown config {unknown[0]!r}; allowed: {', '.join(CONFIGS)}")
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        parser.error(f"--batches {args.batches!r}: give whole numbers, e.g. 1,8")
    if min(batches) < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--batches, --repeats and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"threads": args.threads, "repeats": args.repeats,
                               "batches": batches, "configs": {}}  # fmt: skip
    for config in args.configs.split(","):
        measured = run_config(config, batches, args.repeats)
        results["configs"][config] = measured
        for variant, rows in measured["variants"].items():
            per = "  ".join(
                f"b{b}: {rows[str(b)]['cpu_s_per_image']:.3f} cpu / "
                f"{rows[str(b)]['wall_s_per_image']:.3f} wall s/img"
                for b in batches
            )
            print(f"{config:10s} {variant:20s} {per}  batching {rows['batching_cpu']:.2f}x cpu, "
                  f"{rows['batching_wall']:.2f}x wall", flush=True)  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
