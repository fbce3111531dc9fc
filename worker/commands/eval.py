"""`unclip eval --family DIR --out report.json`: run ShapeEval on a model family."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", required=True, type=Path, help="model family folder")
    parser.add_argument("--out", required=True, type=Path, help="where to write report.json")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="only the first N prompts (and smaller other sections): quick check",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="the networks' dtype (default float32)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="requests rendered together (default 16)"
    )
    parser.add_argument(
        "--ddpm-steps",
        type=int,
        default=250,
        help="DDPM prior and decoder steps in the sampler-steps comparison (default 250)",
    )
    parser.add_argument(
        "--steps-prompts",
        type=int,
        default=None,
        help="one-object prompts in the sampler-steps comparison (default 16, fewer with --limit)",
    )
    parser.add_argument(
        "--samples",
        type=Path,
        default=None,
        metavar="DIR",
        help="also save the generated images, readings.jsonl and grid.png to DIR",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def _check(args: argparse.Namespace) -> str | None:
    """The first problem with the arguments, naming the bad value, or None."""
    if not (args.family / "family.json").is_file():
        return f"--family {args.family} is not a model family (no family.json in it)"
    if args.limit is not None and args.limit < 1:
        return f"--limit must be >= 1, got {args.limit}"
    if args.batch_size < 1:
        return f"--batch-size must be >= 1, got {args.batch_size}"
    if args.ddpm_steps < 1:
        return f"--ddpm-steps must be >= 1, got {args.ddpm_steps}"
    if args.steps_prompts is not None and args.steps_prompts < 1:
        return f"--steps-prompts must be >= 1, got {args.steps_prompts}"
    if args.threads is not None and args.threads < 1:
        return f"--threads must be >= 1, got {args.threads}"
    if args.out.is_dir():  # found now, not after the whole evaluation
        return f"--out {args.out} is a folder; give the report's file name"
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "--device cuda: this machine has no CUDA device torch can use"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem is not None:
        print(f"unclip eval: {problem}", file=sys.stderr)
        return 2
    import torch  # the worker side only: keep `unclip --help` light

    from worker.evaluation.report import format_table, write_report
    from worker.evaluation.shapeeval import EvalOptions, run_shapeeval

    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    options = EvalOptions(
        limit=args.limit,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        ddpm_steps=args.ddpm_steps,
        steps_prompts=args.steps_prompts,
        samples_dir=args.samples,
    )
    from safetensors import SafetensorError

    from worker.unclip.family import FamilyError

    try:
        report = run_shapeeval(args.family, options, log=lambda m: print(m, file=sys.stderr))
    except (FamilyError, SafetensorError) as exc:  # an incomplete or corrupt family
        print(f"unclip eval: the family in {args.family} cannot be loaded: {exc}",
              file=sys.stderr)  # fmt: skip
        return 2
    finally:
        torch.set_num_threads(threads)  # leave the process as it was (tests share it)
    write_report(report, args.out)
    print(format_table(report))
    print(f"report written to {args.out}")
    return 0
