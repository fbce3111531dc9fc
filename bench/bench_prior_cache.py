"""Time one prior step with and without the text-prefix cache (worker/unclip/nets/prior_cache.py).

Usage, from the repository root:
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_prior_cache [--threads 1] [--repeats 9]
        [--json OUT]

Per config and row count, `--repeats` rounds, each timing `--calls` consecutive steps of the
uncached PriorNet.forward and of predict_with_prefix, in alternating order (interleaved, so
a change in machine load hits both alike); the medians of the rounds are reported, with the
one-off cost of encode_prefix. Configs: the shipped shapes family's prior
(models/shapes/prior.json: 32 text tokens + 4) with 8 rows (one image: best of 4 candidates x
[cond; uncond]) and 32 rows (4 images); and Karlo's prior layout (77 text tokens + 4,
configs/prior_1B_vit_l.yaml) at a reduced width and depth, with 2 and 8 rows. Each plain and
in batch-invariant mode (worker/unclip/batch_invariance.py, reproducible renders).
Random weights, float32, CPU.
Then, when models/shapes is present, the whole prior stage (run_prior: CLIP text encoding,
guided sampling at the family's default steps, best-of-k) for 1, 4 and 8 images, against the
same stage with the pre-cache net_fn swapped in, and with the cache but a prefix per row
instead of one per distinct text (interleaved likewise). `--stage-only` skips the nets.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from worker.unclip import batch_invariance, prior_stage
from worker.unclip.clip_encoder import TextEncoding
from worker.unclip.configs import PriorConfig
from worker.unclip.family import Family, load_family
from worker.unclip.guidance import NetFn, concat_encodings
from worker.unclip.karlo_configs import karlo_prior_config
from worker.unclip.nets import PriorNet
from worker.unclip.nets.prior_cache import encode_prefix, predict_with_prefix
from worker.unclip.render_spec import RenderSpec

ROOT = Path(__file__).parents[1]


def configs() -> dict[str, PriorConfig]:
    shapes = PriorConfig.from_dict(json.loads((ROOT / "models/shapes/prior.json").read_text()))
    karlo = dataclasses.replace(karlo_prior_config(), width=256, layers=4, heads=4)
    return {"shapes": shapes, "karlo-layout-w256-l4": karlo}


def _per_call(fn: Callable[[], object], calls: int) -> float:
    """Process CPU seconds per call (steadier than wall time on a shared machine)."""
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls


@torch.inference_mode()
def measure(
    cfg: PriorConfig, rows: int, repeats: int, calls: int, *, stable: bool
) -> dict[str, Any]:
    torch.manual_seed(0)
    net = PriorNet(cfg).eval()
    batch_invariance.install([net])
    with batch_invariance.batch_invariance(stable):
        return _measure(net, rows, repeats, calls)


def _measure(net: PriorNet, rows: int, repeats: int, calls: int) -> dict[str, Any]:
    cfg = net.cfg
    mask = torch.ones(rows, cfg.text_ctx, dtype=torch.bool)
    mask[:, 12:] = False  # a 12-token prompt, the rest padding
    text = {
        "text_emb": torch.randn(rows, cfg.clip_dim),
        "text_tokens": torch.randn(rows, cfg.text_ctx, cfg.text_width),
        "text_mask": mask,
    }
    x_t, t = torch.randn(rows, cfg.clip_dim), torch.full((rows,), 500)
    prefix = encode_prefix(net, **text)
    runs: dict[str, Callable[[], object]] = {
        "uncached": lambda: net(x_t, t, **text),
        "cached": lambda: predict_with_prefix(net, x_t, t, prefix),
        "encode_prefix": lambda: encode_prefix(net, **text),
    }
    for fn in runs.values():  # warm up
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            times[name].append(_per_call(runs[name], 1 if name == "encode_prefix" else calls))
    med = {name: statistics.median(values) for name, values in times.items()}
    return {
        "rows": rows,
        "seq": cfg.text_ctx + 4,
        "uncached_ms_per_step": round(med["uncached"] * 1e3, 3),
        "cached_ms_per_step": round(med["cached"] * 1e3, 3),
        "speedup": round(med["uncached"] / med["cached"], 2),
        "encode_prefix_ms": round(med["encode_prefix"] * 1e3, 3),
    }


def _uncached_net_fn(family: Family, cond: TextEncoding, null: TextEncoding) -> NetFn:
    """The prior stage's net_fn as it was before the cache: the whole sequence every step."""
    texts = {"cond": cond, "both": concat_encodings(cond, null)}

    def net_fn(x: torch.Tensor, t: torch.Tensor, half: str) -> torch.Tensor:
        text = texts[half]
        out: torch.Tensor = family.prior(
            x, t, text_emb=text.pooled, text_tokens=text.tokens, text_mask=text.mask
        )
        return out

    return net_fn


@contextlib.contextmanager
def _uncached_stage() -> Iterator[None]:
    cached = prior_stage._prior_net_fn
    prior_stage._prior_net_fn = _uncached_net_fn
    try:
        yield
    finally:
        prior_stage._prior_net_fn = cached


@contextlib.contextmanager
def _prefix_per_row() -> Iterator[None]:
    """The cache without text ids: every row's prefix computed, as before they were shared."""
    shared = prior_stage.encode_prefix

    def per_row(net: Any, **text: Any) -> Any:
        text.pop("text_ids", None)
        return shared(net, **text)

    prior_stage.encode_prefix = per_row
    try:
        yield
    finally:
        prior_stage.encode_prefix = shared


def _run_per_row(family: Family, spec: RenderSpec) -> object:
    with _prefix_per_row():
        return prior_stage.run_prior(family, [spec])


def measure_stage(family: Family, n: int, repeats: int) -> dict[str, Any]:
    """run_prior for one generate request of n images at the family's defaults: uncached,
    cached with a prefix per row, cached with one prefix per distinct text (the stage now)."""
    spec = RenderSpec(kind="generate", prompt="a red cube left of a blue ball", n=n, seed=3)
    runs: dict[str, Callable[[], object]] = {
        "cached": lambda: prior_stage.run_prior(family, [spec]),
        "per_row": lambda: _run_per_row(family, spec),
        "uncached": lambda: _run_uncached(family, spec),
    }
    for fn in runs.values():  # warm up
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        for name in list(runs) if r % 2 == 0 else list(reversed(runs)):
            times[name].append(_per_call(runs[name], 1))
    med = {name: statistics.median(values) for name, values in times.items()}
    return {
        "images": n,
        "steps": spec.steps.prior,
        "uncached_s": round(med["uncached"], 4),
        "cached_per_row_s": round(med["per_row"], 4),
        "cached_s": round(med["cached"], 4),
        "speedup": round(med["uncached"] / med["cached"], 2),
        "shared_text_speedup": round(med["per_row"] / med["cached"], 2),
    }


def _run_uncached(family: Family, spec: RenderSpec) -> object:
    with _uncached_stage():
        return prior_stage.run_prior(family, [spec])


def bench_nets(repeats: int, calls: int) -> list[dict[str, Any]]:
    rows_per_config = {"shapes": (8, 32), "karlo-layout-w256-l4": (2, 8)}
    results = []
    for name, cfg in configs().items():
        for rows, stable in itertools.product(rows_per_config[name], (False, True)):
            measured = measure(cfg, rows, repeats, calls, stable=stable)
            row = {"config": name, "batch_invariant": stable, **measured}
            results.append(row)
            print(
                f"{name:22s} rows={row['rows']:3d} seq={row['seq']:3d} "
                f"{'invariant' if stable else 'plain':10s} "
                f"uncached {row['uncached_ms_per_step']:8.3f} ms/step  "
                f"cached {row['cached_ms_per_step']:8.3f} ms/step  x{row['speedup']:.2f}  "
                f"(encode_prefix once: {row['encode_prefix_ms']:.3f} ms)",
                flush=True,
            )
    return results


def bench_stage(repeats: int) -> list[dict[str, Any]]:
    if not (ROOT / "models/shapes/family.json").is_file():
        return []
    family = load_family(ROOT / "models/shapes")
    results = []
    for n in (1, 4, 8):
        row = {"family": family.name, **measure_stage(family, n, repeats)}
        results.append(row)
        print(
            f"run_prior {row['family']} {n} image(s), {row['steps']} steps, best of "
            f"{family.defaults.prior_candidates}: uncached {row['uncached_s']:.4f} s  "
            f"cached per row {row['cached_per_row_s']:.4f} s  cached {row['cached_s']:.4f} s  "
            f"x{row['speedup']:.2f} (shared text x{row['shared_text_speedup']:.2f})",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2, help="steps timed per round")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--stage-only", action="store_true", help="only the whole prior stage")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = {
        "threads": args.threads,
        "rows": [] if args.stage_only else bench_nets(args.repeats, args.calls),
        "stage": bench_stage(args.repeats),
    }
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
