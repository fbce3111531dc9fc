"""Train the shapes family stage by stage into one run folder, then export it as a family."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from worker.training.loop import LoopOptions, LoopResult

STAGES: tuple[str, ...] = ("clip", "prior", "decoder", "upsampler")
# Trained on its own (`unclip train upsampler256`), exported when present, not part of 'all'.
OPTIONAL_STAGES: tuple[str, ...] = ("upsampler256",)
# Shares of a whole-family time budget (`unclip train all --minutes M`).
TIME_SHARES: dict[str, float] = {"clip": 0.12, "prior": 0.10, "decoder": 0.58, "upsampler": 0.20}
BATCH_SIZES: dict[str, int] = {"clip": 256, "prior": 256, "decoder": 32, "upsampler": 32,
                               "upsampler256": 16}
LEARNING_RATES: dict[str, float] = {"clip": 1e-3, "prior": 5e-4, "decoder": 6e-4,
                                    "upsampler": 1e-3, "upsampler256": 5e-4}
# The EMA warms up as (1 + n) / (10 + n), so on short runs it tracks the last ~n/10 steps.
EMA_DECAYS: dict[str, float] = {"clip": 0.995, "prior": 0.995, "decoder": 0.995,
                                "upsampler": 0.999, "upsampler256": 0.999}
WARMUP_STEPS: dict[str, int] = {"clip": 100, "prior": 20, "decoder": 20, "upsampler": 100,
                                "upsampler256": 100}
SUMMARY_NAME = "summary.json"


@dataclass(frozen=True)
class StageReport:
    """What one stage reached: steps, time, final loss and its own metrics."""

    stage: str
    loop: LoopResult
    metrics: dict[str, float]


def stage_dir(run_dir: Path, stage: str) -> Path:
    if stage not in (*STAGES, *OPTIONAL_STAGES):
        raise ValueError(f"unknown stage {stage!r}; allowed: {', '.join(STAGES + OPTIONAL_STAGES)}")
    return Path(run_dir) / stage


def stage_options(base: LoopOptions, run_dir: Path, stage: str, *,
                  lr: float | None = None, ema_decay: float | None = None) -> LoopOptions:
    """Per-stage defaults (learning rate, EMA decay) on top of the shared options; lr and
    ema_decay, when given, override them (e.g. the prior at EMA 0.999, issue 12)."""
    return replace(base, out_dir=stage_dir(run_dir, stage), lr=lr or LEARNING_RATES[stage],
                   ema_decay=ema_decay or EMA_DECAYS[stage], warmup_steps=WARMUP_STEPS[stage])


def _runner(stage: str) -> Callable[..., Any]:
    # Imported by name so that one stage's trainer never needs the others' modules.
    if stage == "clip":
        from worker.training.train_clip import train_clip
        return train_clip
    if stage == "prior":
        from worker.training.train_prior import train_prior
        return train_prior
    if stage == "decoder":
        from worker.training.train_decoder import train_decoder
        return train_decoder
    if stage == "upsampler256":
        from worker.training.train_upsampler import train_upsampler256
        return train_upsampler256
    from worker.training.train_upsampler import train_upsampler
    return train_upsampler


def train_stage(stage: str, run_dir: Path, opts: LoopOptions, *,
                batch_size: int | None = None, hard_negatives: bool = False,
                options: dict[str, Any] | None = None) -> StageReport:
    """Train one stage in run_dir/<stage>; prior and decoder read the CLIP in run_dir/clip.

    `hard_negatives` (clip only) adds NegCLIP twins to each batch (train_clip.ClipTask);
    `options` are further keyword arguments of the stage's trainer (the decoder's row_mix
    and attention_resolutions).
    """
    batch = batch_size or BATCH_SIZES[stage]
    kwargs: dict[str, Any] = {"batch_size": batch, **(options or {})}
    if hard_negatives:
        if stage != "clip":
            raise ValueError(f"hard negatives are a clip option; got stage {stage!r}")
        kwargs["hard_negatives"] = True
    if stage in ("prior", "decoder"):
        kwargs["clip_dir"] = stage_dir(run_dir, "clip")
        if not (kwargs["clip_dir"] / "checkpoint.pt").is_file():
            raise FileNotFoundError(
                f"the {stage} trains on a frozen CLIP, and {kwargs['clip_dir']} holds none; "
                f"first run `unclip train clip --out {run_dir} ...`"
            )
    result = _runner(stage)(opts, **kwargs)
    report = StageReport(stage, result.loop, result.metrics)
    write_summary(report, opts, batch)
    return report


def write_summary(report: StageReport, opts: LoopOptions, batch_size: int) -> None:
    """run_dir/<stage>/summary.json: the numbers the model card quotes."""
    loop = report.loop
    summary = {
        "stage": report.stage, "steps": loop.step, "wall_minutes": round(loop.elapsed_s / 60, 2),
        # No step this run (--steps 0): no loss; JSON has no NaN (strict parsers refuse it).
        "final_loss_smooth": None if math.isnan(loop.loss) else loop.loss,
        "interrupted": loop.interrupted,
        "batch_size": batch_size, "lr": opts.lr, "ema_decay": opts.ema_decay,
        "precision": opts.precision, "device": opts.device, "seed": opts.seed,
        "init_from": None if opts.init_from is None else str(opts.init_from),
        "torch_threads": torch.get_num_threads(), "hardware": _hardware(opts.device),
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "metrics": report.metrics,
    }
    path = opts.out_dir / SUMMARY_NAME
    previous_init = json.loads(path.read_text()).get("init_from") if path.is_file() else None
    if summary["init_from"] is None and previous_init:  # a resumed warm-started run
        summary["init_from"] = previous_init
    if summary["final_loss_smooth"] is None and path.is_file():  # no step: keep the last loss
        previous = json.loads(path.read_text())
        if previous.get("steps") == loop.step:
            summary["final_loss_smooth"] = previous.get("final_loss_smooth")
    path.write_text(json.dumps(summary, indent=2) + "\n")


def _hardware(device: str) -> str:
    """CPU model and core count (and the GPU's name on cuda), for the model card."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {os.cpu_count()} cores"


def split_minutes(total: float | None) -> dict[str, float | None]:
    """Per-stage minutes of a whole-family budget, by TIME_SHARES."""
    return {s: None if total is None else total * TIME_SHARES[s] for s in STAGES}


def train_all(run_dir: Path, base: LoopOptions, *, batch_size: int | None = None,
              lr: float | None = None) -> list[StageReport]:
    """Every stage in order; `base.minutes` is the whole budget, `base.steps` per stage."""
    minutes = split_minutes(base.minutes)
    reports = []
    for stage in STAGES:
        opts = replace(stage_options(base, run_dir, stage, lr=lr), minutes=minutes[stage])
        report = train_stage(stage, run_dir, opts, batch_size=batch_size)
        reports.append(report)
        if report.loop.interrupted:
            break
    return reports
