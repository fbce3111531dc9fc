"""`unclip train {clip,prior,decoder,upsampler,upsampler256,all}`: train the shapes family."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

STAGE_CHOICES = ("clip", "prior", "decoder", "upsampler", "upsampler256", "all")
INTERRUPTED = 130  # the shell's code for "stopped by a signal"; rerun with --resume


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", choices=STAGE_CHOICES,
                        help="stage to train; prior and decoder need a trained clip in --out")
    parser.add_argument("--out", required=True, type=Path,
                        help="run folder: each stage trains in OUT/<stage>/ (checkpoint.pt, "
                             "metrics.jsonl, summary.json)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training time of the stage, in total over resumed runs; with "
                             "'all', the whole family's time, split across the stages")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps of the stage (of each stage with 'all'), in total; "
                             "0 with --init adopts the family's weights as the stage's "
                             "checkpoint without training")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/<stage>/checkpoint.pt when it exists")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="batch size (default per stage: clip 256, prior 256, decoder 32, "
                             "upsampler 32, upsampler256 16)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default per stage)")
    parser.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine", "step"),
                        help="decay over the budget after warm-up: cosine to lr * 0.1, or "
                             "x0.1 at half and at three quarters of it")
    parser.add_argument("--ema-decay", type=float, default=None,
                        help="EMA decay of the exported weights (default per stage: 0.995, "
                             "upsamplers 0.999)")
    parser.add_argument("--decoder-attention", default=None, metavar="RES[,RES]",
                        help="decoder only: attention resolutions in pixels, e.g. 16,8 "
                             "(default 8)")
    parser.add_argument("--text-only-fraction", type=float, default=None,
                        help="decoder only: share of rows with the caption but no image "
                             "embedding (default: the config's independent drops, 5%% "
                             "text-only; with either fraction given, 20%%)")
    parser.add_argument("--image-only-fraction", type=float, default=None,
                        help="decoder only: share of rows with the image embedding and the "
                             "empty caption (with either fraction given, default 30%%)")
    parser.add_argument("--l1-weight", type=float, default=None,
                        help="upsampler256 only: weight of an L1 term on the x0 estimate "
                             "(sharper edges than MSE alone; default 0)")
    parser.add_argument("--last-step-share", type=float, default=None,
                        help="upsampler256 only: share of rows trained at the last timestep, "
                             "where a 1-step cascade samples (default 0: uniform t)")
    parser.add_argument("--degradation", default=None, choices=("blur", "bsr"),
                        help="upsampler256 only: corruption of the 64 px input in training: "
                             "blur (the default: mild Gaussian blur and noise around the "
                             "32 -> 64 upsampler's softness) or bsr (blur, rescale, noise, "
                             "JPEG; the only one before, so older checkpoints resume with "
                             "it); resume with the same")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"),
                        help="autocast dtype of the forward pass (weights stay fp32)")
    parser.add_argument("--seed", type=int, default=0, help="data and noise seed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--checkpoint-every", type=float, default=120.0, metavar="SECONDS",
                        help="seconds between checkpoints (also written at the end and on "
                             "SIGINT/SIGTERM)")
    parser.add_argument("--export", type=Path, default=None, metavar="DIR",
                        help="after training, write the model family to DIR (needs all four "
                             "stages trained in --out); with upsampler256, add that upsampler "
                             "to the family in DIR")
    parser.add_argument("--cascade-steps", type=int, default=None, metavar="N",
                        help="upsampler256 with --export: the family's default step count "
                             "for it (defaults.cascade_steps; unset: the request's upsampler "
                             "steps)")
    parser.add_argument("--init", type=Path, default=None, metavar="FAMILY",
                        help="warm start: begin each stage from the weights of this model "
                             "family (same configs); ignored when --resume finds a checkpoint")
    parser.add_argument("--hard-negatives", action="store_true",
                        help="clip only: add each two-object scene's twin with swapped colours, "
                             "swapped shapes or a flipped relation to its batch (NegCLIP)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _export_problem(args: argparse.Namespace) -> str | None:
    """What would stop --export after training, found before the training runs."""
    if args.export is None:
        return None
    if args.export.exists() and not args.export.is_dir():
        return f"--export {args.export} exists and is not a folder"
    if args.stage == "upsampler256":
        if not (args.export / "family.json").is_file():
            return (f"--export {args.export} is not a model family folder (no family.json): "
                    "upsampler256 is added to an exported family")
        return None
    if args.stage == "all":
        return None
    from worker.training.train_family import STAGES, stage_dir

    missing = [s for s in STAGES
               if s != args.stage and not (stage_dir(args.out, s) / "checkpoint.pt").is_file()]
    if missing:
        return (f"--export needs every stage trained in {args.out}; no checkpoint for "
                f"{', '.join(missing)} (train them first, or export later with a stage that "
                "completes the set)")
    return None


def _check(args: argparse.Namespace) -> str | None:
    """The first problem with the arguments, as a message naming the bad value, or None."""
    if args.minutes is None and args.steps is None:
        return "give a budget: --minutes M and/or --steps N"
    if args.minutes is not None and not args.minutes > 0:
        return f"--minutes must be > 0, got {args.minutes}"
    if args.steps is not None and args.steps < (0 if args.init is not None else 1):
        return f"--steps must be >= 1 (or 0 with --init), got {args.steps}"
    if args.batch_size is not None and args.batch_size < 2:
        return f"--batch-size must be >= 2, got {args.batch_size}"
    if args.lr is not None and not args.lr > 0:
        return f"--lr must be > 0, got {args.lr}"
    if args.threads is not None and args.threads < 1:
        return f"--threads must be >= 1, got {args.threads}"
    if args.hard_negatives and args.stage != "clip":
        return f"--hard-negatives is a clip option, got stage {args.stage!r}"
    if args.checkpoint_every <= 0:
        return f"--checkpoint-every must be > 0 seconds, got {args.checkpoint_every}"
    if args.init is not None and not (args.init / "family.json").is_file():
        return f"--init {args.init} is not a model family folder (no family.json)"
    if args.out.exists() and not args.out.is_dir():
        return f"--out {args.out} exists and is not a folder"
    export_problem = _export_problem(args)
    if export_problem is not None:
        return export_problem
    if args.cascade_steps is not None and (args.stage != "upsampler256" or args.export is None
                                           or args.cascade_steps < 1):
        return (f"--cascade-steps N (>= 1) goes with upsampler256 and --export, got "
                f"{args.cascade_steps}")
    if args.ema_decay is not None and not 0.0 < args.ema_decay < 1.0:
        return f"--ema-decay must be in (0, 1), got {args.ema_decay}"
    decoder_only = (args.decoder_attention, args.text_only_fraction, args.image_only_fraction)
    if args.stage != "decoder" and any(v is not None for v in decoder_only):
        return (f"--decoder-attention, --text-only-fraction and --image-only-fraction apply to "
                f"the decoder stage, not {args.stage!r}")
    upsampler_only = (args.l1_weight, args.last_step_share)
    if args.stage != "upsampler256" and any(v is not None for v in upsampler_only):
        return f"--l1-weight and --last-step-share apply to upsampler256, not {args.stage!r}"
    if args.stage != "upsampler256" and args.degradation is not None:
        return f"--degradation applies to upsampler256, not {args.stage!r}"
    if args.l1_weight is not None and not args.l1_weight >= 0:
        return f"--l1-weight must be >= 0, got {args.l1_weight}"
    if args.last_step_share is not None and not 0 <= args.last_step_share <= 1:
        return f"--last-step-share must be in [0, 1], got {args.last_step_share}"
    if args.decoder_attention is not None and not all(
        p.strip().isdigit() for p in args.decoder_attention.split(",")
    ):
        return f"--decoder-attention must be pixel sizes like 16,8, got {args.decoder_attention!r}"
    return None


def _stage_options(args: argparse.Namespace) -> dict[str, Any]:
    """The decoder's and upsampler256's extra trainer arguments from the command line."""
    options: dict[str, Any] = {}
    if args.l1_weight is not None or args.last_step_share is not None:
        from worker.training.train_upsampler import UpsamplerLoss

        options["loss_terms"] = UpsamplerLoss(l1_weight=args.l1_weight or 0.0,
                                              last_step_share=args.last_step_share or 0.0)
    if args.degradation is not None:
        options["degradation"] = args.degradation
    if args.decoder_attention is not None:
        options["attention_resolutions"] = tuple(
            int(p) for p in args.decoder_attention.split(","))
    if args.text_only_fraction is not None or args.image_only_fraction is not None:
        from worker.training.train_decoder import RowMix

        given = {"text_only": args.text_only_fraction, "image_only": args.image_only_fraction}
        options["row_mix"] = RowMix(**{k: v for k, v in given.items() if v is not None})
    return options


def run(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem is not None:
        print(f"unclip train: error: {problem}", file=sys.stderr)
        return 2
    import torch

    from worker.training.loop import LoopOptions
    from worker.training.train_family import stage_options, train_all, train_stage

    if args.device == "cuda" and not torch.cuda.is_available():
        print("unclip train: error: --device cuda given but no CUDA device is available; "
              "use --device cpu", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    base = LoopOptions(
        out_dir=args.out, minutes=args.minutes, steps=args.steps, resume=args.resume,
        device=args.device, precision=args.precision, seed=args.seed,
        checkpoint_every_s=args.checkpoint_every, progress=not args.no_progress,
        init_from=args.init, lr_schedule=args.lr_schedule,
    )
    try:
        if args.stage == "all":
            reports = train_all(args.out, base, batch_size=args.batch_size, lr=args.lr)
        else:
            opts = stage_options(base, args.out, args.stage, lr=args.lr, ema_decay=args.ema_decay)
            reports = [train_stage(args.stage, args.out, opts, batch_size=args.batch_size,
                                   hard_negatives=args.hard_negatives,
                                   options=_stage_options(args))]
    except (FileNotFoundError, FileExistsError, ValueError) as exc:  # e.g. a missing CLIP
        print(f"unclip train: error: {exc}", file=sys.stderr)
        return 2
    for r in reports:
        print(f"{r.stage}: {r.loop.step} steps, {r.loop.elapsed_s / 60:.1f} min, "
              f"loss {r.loop.loss:.4f}, {r.metrics}")
    if any(r.loop.interrupted for r in reports):
        print("interrupted: checkpoint written; rerun with --resume to continue", file=sys.stderr)
        return INTERRUPTED
    if args.export is not None and args.stage == "upsampler256":
        from worker.training.export import add_cascade_upsampler
        from worker.training.train_family import stage_dir

        path = add_cascade_upsampler(stage_dir(args.out, args.stage), args.export,
                                     steps=args.cascade_steps)
        print(f"64 -> 256 upsampler added to the family in {path}")
    elif args.export is not None:
        from worker.training.export import export_family

        path = export_family(args.out, args.export)
        print(f"family written to {path}")
    return 0
