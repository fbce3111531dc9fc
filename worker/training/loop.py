"""The training loop every stage shares: optimizer, EMA, budget, progress bar, checkpoints."""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import Tensor, nn

from shared.console_progress import StepBar
from worker.training.checkpoint import (
    TrainState,
    capture_rng,
    checkpoint_path,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from worker.training.ema import EMA

Precision = Literal["bf16", "fp32"]
LrSchedule = Literal["constant", "cosine", "step"]
LR_SCHEDULES: tuple[LrSchedule, ...] = ("constant", "cosine", "step")
LR_STEP_MILESTONES = (0.5, 0.75)  # fractions of the budget where "step" multiplies by gamma


class StageTask(Protocol):
    """One stage to train: its network, its config and the loss of the batch of a given step."""

    stage: str
    config: dict[str, Any]

    @property
    def model(self) -> nn.Module: ...  # read-only, so a task may hold any Module subclass

    def loss(self, step: int, noise: torch.Generator) -> tuple[Tensor, dict[str, float]]: ...

    def warm_start(self, family_dir: Path) -> None: ...

    def extra_state(self) -> dict[str, Any]: ...

    def load_extra_state(self, extra: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class LoopOptions:
    """How long and how to train. `minutes` and `steps` are totals over every resumed run."""

    out_dir: Path
    minutes: float | None = None
    steps: int | None = None
    resume: bool = False
    device: str = "cpu"
    precision: Precision = "bf16"
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every_s: float = 120.0
    log_every: int = 10
    progress: bool = True
    init_from: Path | None = None  # a model family to warm-start from (ignored on resume)
    # Decay over the budget (steps or minutes, whichever runs out first), after warm-up:
    # cosine from lr to lr * lr_min_ratio, or steps of lr_gamma at LR_STEP_MILESTONES.
    lr_schedule: LrSchedule = "constant"
    lr_min_ratio: float = 0.1
    lr_gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.minutes is None and self.steps is None:
            raise ValueError("give a budget: minutes or steps (or both); got neither")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes!r}")
        if self.steps is not None and self.steps < (0 if self.init_from is not None else 1):
            raise ValueError(f"steps must be > 0 (or 0 with init_from, to adopt a family's "
                             f"weights as the step-0 checkpoint), got {self.steps!r}")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got "
                             f"{self.lr_schedule!r}")
        if not 0.0 <= self.lr_min_ratio <= 1.0 or not 0.0 < self.lr_gamma <= 1.0:
            raise ValueError(f"lr_min_ratio must be in [0, 1] and lr_gamma in (0, 1], got "
                             f"{self.lr_min_ratio!r} and {self.lr_gamma!r}")


@dataclass
class LoopResult:
    """What a finished (or interrupted) run reached."""

    stage: str
    step: int
    elapsed_s: float
    loss: float
    interrupted: bool
    checkpoint: Path
    history: list[dict[str, float]] = field(default_factory=list)


class _Stopper:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so a checkpoint is written."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True


@contextmanager
def _stop_on_signals() -> Iterator[_Stopper]:
    stopper = _Stopper()
    try:
        old = {s: signal.signal(s, stopper) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals stay as they are
        old = {}
    try:
        yield stopper
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def _autocast(device: torch.device, precision: Precision) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _budget_done(step: int, elapsed: float, opts: LoopOptions) -> bool:
    if opts.steps is not None and step >= opts.steps:
        return True
    return opts.minutes is not None and elapsed >= opts.minutes * 60.0


def budget_fraction(step: int, elapsed: float, opts: LoopOptions) -> float:
    """How much of the budget is spent, in [0, 1]: the larger of the step and time shares."""
    shares = [0.0]
    if opts.steps:
        shares.append(step / opts.steps)
    if opts.minutes is not None:
        shares.append(elapsed / (opts.minutes * 60.0))
    return min(1.0, max(shares))


def learning_rate(step: int, elapsed: float, opts: LoopOptions) -> float:
    """The step's learning rate: linear warm-up, then opts.lr_schedule over the budget."""
    warmup = min(1.0, (step + 1) / max(1, opts.warmup_steps))
    done = budget_fraction(step, elapsed, opts)
    if opts.lr_schedule == "cosine":
        decay = opts.lr_min_ratio + (1 - opts.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * done))
    elif opts.lr_schedule == "step":
        decay = opts.lr_gamma ** sum(done >= m for m in LR_STEP_MILESTONES)
    else:
        decay = 1.0
    return opts.lr * warmup * decay


class _Run:
    """The mutable pieces of one run, so the loop itself stays short."""

    def __init__(self, task: StageTask, opts: LoopOptions) -> None:
        self.task, self.opts = task, opts
        self.device = torch.device(opts.device)
        self.path = checkpoint_path(opts.out_dir)
        if opts.init_from is not None and not self.path.exists():
            task.warm_start(opts.init_from)  # before the EMA copies the weights
        task.model.to(self.device).train()
        params = [p for p in task.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=opts.lr, weight_decay=opts.weight_decay)
        self.ema = EMA(task.model, opts.ema_decay)
        self.noise = torch.Generator(device=self.device).manual_seed(opts.seed)
        self.step, self.elapsed = 0, 0.0

    def maybe_resume(self) -> None:
        if not self.path.exists():
            return
        if not self.opts.resume:
            raise FileExistsError(
                f"{self.path} exists; pass --resume to continue that run, or choose another --out"
            )
        state = load_checkpoint(self.path)
        if state.stage != self.task.stage:
            raise ValueError(
                f"{self.path} is a {state.stage!r} checkpoint, not {self.task.stage!r}"
            )
        if state.config != self.task.config:
            raise ValueError(f"{self.path} was trained with another config: {state.config} "
                             f"!= {self.task.config}")
        self.task.model.load_state_dict(state.model)
        self.ema.load_state_dict(state.ema)
        self.optimizer.load_state_dict(state.optimizer)
        self.task.load_extra_state(state.extra)
        restore_rng(state.rng, self.noise)
        self.step, self.elapsed = state.step, state.elapsed_s

    def save(self) -> None:
        state = TrainState(
            stage=self.task.stage, config=self.task.config,
            model=self.task.model.state_dict(), ema=self.ema.state_dict(),
            optimizer=self.optimizer.state_dict(), step=self.step, elapsed_s=self.elapsed,
            rng=capture_rng(self.noise), extra=self.task.extra_state(),
        )
        save_checkpoint(state, self.path)

    def train_step(self) -> tuple[float, dict[str, float]]:
        opts = self.opts
        lr = learning_rate(self.step, self.elapsed, opts)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with _autocast(self.device, opts.precision):
            loss, metrics = self.task.loss(self.step, self.noise)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"{self.task.stage}: loss is {loss.item()} at step "
                                     f"{self.step}; lower --lr or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.task.model.parameters(), opts.grad_clip)
        self.optimizer.step()
        self.ema.update(self.task.model)
        self.step += 1
        return loss.item(), {"lr": lr, **metrics}


def _log_line(path: Path, record: dict[str, float]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def run_training(task: StageTask, opts: LoopOptions) -> LoopResult:
    """Train `task` until the budget is spent; checkpoint periodically, on a signal and at end."""
    run = _Run(task, opts)
    run.maybe_resume()
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = opts.out_dir / "metrics.jsonl"
    bar = StepBar(opts.steps, task.stage, initial=run.step, disable=not opts.progress)
    smooth, history, last_save = float("nan"), [], time.monotonic()
    with _stop_on_signals() as stopper:
        while not _budget_done(run.step, run.elapsed, opts) and not stopper.requested:
            t0 = time.monotonic()
            loss, metrics = run.train_step()
            smooth = loss if math.isnan(smooth) else 0.95 * smooth + 0.05 * loss
            run.elapsed += time.monotonic() - t0
            bar.update(1)
            bar.status(loss=f"{smooth:.4f}", min=f"{run.elapsed / 60:.1f}")
            if run.step % opts.log_every == 0:
                record = {"step": run.step, "elapsed_s": round(run.elapsed, 1),
                          "loss": loss, "loss_smooth": smooth, **metrics}
                history.append(record)
                _log_line(metrics_path, record)
            if time.monotonic() - last_save >= opts.checkpoint_every_s:
                run.save()
                last_save = time.monotonic()
        run.save()
    bar.close()
    return LoopResult(task.stage, run.step, run.elapsed, smooth, stopper.requested, run.path,
                      history)
