"""How close a render runs to this CPU's convolution speed: FLOPs, CPU time, GFLOP/s.

Usage, from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.render_flops [--threads 1] [--batches 1,4]
        [--repeats 5] [--family models/shapes] [--json OUT]

The render is bench_vs_karlo's "ours" on the shipped shapes family (DDPM 10/10/4, guidance
4/8, one prior candidate), so the figures explain that comparison. Per batch size:
- the FLOPs of one render per image, counted by torch.profiler (with_flops) on an eager run
  (convolutions, matmuls and adds; frozen graphs call oneDNN directly, which it does not
  count, and they do the same arithmetic);
- the median process CPU seconds per image of the default (frozen graphs) render;
- the achieved GFLOP/s = FLOPs / CPU s;
- beside it, the speed of the render's own most expensive convolution shapes timed alone
  (F.conv2d, same thread count): the rate the network's arithmetic could run at if nothing
  else took time.
A render at or near its convolutions' own rate has no overhead left to remove; it can only
get faster by doing less arithmetic (fewer steps, bf16, fewer rows) or by faster kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from bench.karlo_reference.bench_vs_karlo import ours_render
from worker.unclip.family import load_family
from worker.unclip.render_spec import StageSteps

ROOT = Path(__file__).resolve().parents[1]
STEPS = StageSteps(prior=10, decoder=10, upsampler=4)


def render_flops(fn: Callable[[], Any]) -> tuple[float, Counter[tuple[Any, ...]]]:
    """(FLOPs of one call, FLOPs per convolution input shape) counted by torch.profiler."""
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], with_flops=True,
                                  record_shapes=True) as prof:  # fmt: skip
        fn()
    per_conv: Counter[tuple[Any, ...]] = Counter()
    for event in prof.key_averages(group_by_input_shape=True):
        if event.key == "aten::conv2d" and event.flops:
            x, w = event.input_shapes[0], event.input_shapes[1]
            per_conv[(tuple(x), tuple(w))] += event.flops
    return float(sum(e.flops for e in prof.key_averages())), per_conv


def cpu_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def conv_rate(x_shape: tuple[int, ...], w_shape: tuple[int, ...], repeats: int) -> float:
    """GFLOP/s of F.conv2d at these shapes (stride 1, same padding), timed alone."""
    x, w, b = torch.randn(x_shape), torch.randn(w_shape), torch.randn(w_shape[0])
    pad = w_shape[-1] // 2
    flops = 2 * w_shape[0] * w_shape[1] * w_shape[2] * w_shape[3] * x_shape[0]
    flops *= x_shape[2] * x_shape[3]
    with torch.no_grad():
        seconds = cpu_seconds(lambda: [F.conv2d(x, w, b, padding=pad) for _ in range(5)], repeats)
    return flops * 5 / seconds / 1e9


def measure(family_dir: Path, batch: int, repeats: int) -> dict[str, Any]:
    family = load_family(family_dir)
    family.frozen_graphs_trace_after_calls = 0  # steady state: trace on first use
    family.defaults = replace(family.defaults, prior_candidates=1)  # as bench_vs_karlo
    fn = ours_render(family, batch, STEPS)
    seconds = cpu_seconds(fn, repeats) / batch
    family.frozen_graphs = False
    total, per_conv = render_flops(fn)
    family.frozen_graphs = True
    flops = total / batch
    top = per_conv.most_common(6)
    conv_share = sum(per_conv.values()) / total
    weighted = sum(f for _, f in top)
    rates = [(shape, conv_rate(shape[0], shape[1], repeats), f) for shape, f in top]
    top_rate = weighted / sum(f / r for _, r, f in rates)  # the FLOP-weighted harmonic mean
    return {
        "batch": batch,
        "gflop_per_image": round(flops / 1e9, 3),
        "conv_share_of_flops": round(conv_share, 3),
        "cpu_s_per_image": round(seconds, 4),
        "achieved_gflops": round(flops / seconds / 1e9, 1),
        "top_convs_alone_gflops": round(top_rate, 1),
        "top_convs": [
            {
                "input": list(x),
                "weight": list(w),
                "share_of_flops": round(f / total, 3),
                "alone_gflops": round(r, 1),
            }
            for (x, w), r, f in rates
        ],  # fmt: skip
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--family", type=Path, default=ROOT / "models/shapes")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(args.family, int(b), args.repeats) for b in args.batches.split(",")]
    for row in rows:
        print(
            f"batch {row['batch']}: {row['gflop_per_image']} GFLOP/image "
            f"({row['conv_share_of_flops']:.0%} convolutions), {row['cpu_s_per_image']} CPU s "
            f"-> {row['achieved_gflops']} GFLOP/s; its top convolutions alone "
            f"{row['top_convs_alone_gflops']} GFLOP/s"
        )
    if args.json:
        meta = {"threads": args.threads, "steps": [STEPS.prior, STEPS.decoder, STEPS.upsampler],
                "load_average": list(os.getloadavg())}  # fmt: skip
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
