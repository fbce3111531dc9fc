"""Stages 4 and 5: train the upsamplers (32 -> 64, and 64 -> 256 on crops) on shapes renders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from worker.shapes.scenes import Scene
from worker.training.checkpoint import checkpoint_path, load_checkpoint
from worker.training.data import SceneSource, to_model_range
from worker.training.degradation import (
    CASCADE_BLUR,
    DEGRADATIONS,
    FIRST_UPSAMPLER_BLUR,
    BlurRanges,
    Degradation,
    blur_noise_degrade,
    bsr_degrade,
)
from worker.training.family_configs import shapes_upsampler256_config, shapes_upsampler_config
from worker.training.loop import LoopOptions, LoopResult, run_training
from worker.training.upsampler_eval import HELD_SEED, psnr, upsampler_edge_metrics
from worker.training.warm_start import load_weights
from worker.unclip.configs import UpsamplerConfig
from worker.unclip.diffusion.gaussian_diffusion import diffusion_from_config
from worker.unclip.diffusion.respace import respaced
from worker.unclip.diffusion.samplers import sample_ddim
from worker.unclip.nets.upsampler_net import UpsamplerPair, resize_low_res

UPSAMPLER_STAGES = ("upsampler", "upsampler256")
WEIGHT_FILES = {"upsampler": "upsampler.safetensors", "upsampler256": "upsampler256.safetensors"}
# The "blur" degradation's ranges per stage (worker/training/degradation.py).
BLUR_RANGES = {"upsampler": FIRST_UPSAMPLER_BLUR, "upsampler256": CASCADE_BLUR}
OBJECT_CROP_PROB = 0.8  # crops centred near an object's edge; the rest anywhere (mostly flat)


def crop_origins(scenes: list[Scene], side: int, crop: int, rng: np.random.Generator, *,
                 align: int = 1) -> list[tuple[int, int]]:
    """(top, left) per scene of a crop x crop window, most of them over an object's boundary.

    DALL-E 2 trains its upsamplers on random crops (a quarter of the side); flat shapes
    scenes are mostly background, so crops are drawn near an object with OBJECT_CROP_PROB.
    Origins are multiples of `align` (the upsampling factor), so a crop's pixel blocks sit
    on the low-res pixel grid as the full image's do.
    """
    out = []
    for scene in scenes:
        if scene.objects and rng.random() < OBJECT_CROP_PROB:
            obj = scene.objects[int(rng.integers(len(scene.objects)))]
            u, v = rng.uniform(-0.6, 0.6, size=2) * obj.extent
            cx, cy = (obj.cx + u) * side, (obj.cy + v) * side
        else:
            cx, cy = rng.uniform(0, side, size=2)
        left = int(np.clip(round((cx - crop / 2) / align) * align, 0, side - crop))
        top = int(np.clip(round((cy - crop / 2) / align) * align, 0, side - crop))
        out.append((top, left))
    return out


def take_crops(images: Tensor, origins: list[tuple[int, int]], crop: int) -> Tensor:
    """(B, C, crop, crop) windows of images (B, C, H, W) at the given (top, left)."""
    return torch.stack([im[:, t : t + crop, le : le + crop]
                        for im, (t, le) in zip(images, origins, strict=True)])


@dataclass(frozen=True)
class UpsamplerLoss:
    """Terms added to L_simple for an upsampler sampled in very few steps (issue 12).

    - l1_weight: an L1 term on the x0 estimate. The MSE optimum is the conditional mean,
      which draws an edge whose position the low-res input leaves uncertain as a ramp; L1's
      is the per-pixel median, a step (SR3 and Palette train on L1 for sharper outputs).
    - last_step_share: the share of rows trained at t = T - 1, where a 1-step trailing DDIM
      samples: there the net regresses x0 from the condition alone, a task uniform t rarely
      draws.
    """

    l1_weight: float = 0.0
    last_step_share: float = 0.0

    def __post_init__(self) -> None:
        if not self.l1_weight >= 0.0:
            raise ValueError(f"l1_weight must be >= 0, got {self.l1_weight!r}")
        if not 0.0 <= self.last_step_share <= 1.0:
            raise ValueError(f"last_step_share must be in [0, 1], got {self.last_step_share!r}")


class UpsamplerTask:
    """Denoise the high-res render given its low-res render (degraded, bicubic-resized).

    `crop` trains on crop x crop windows of the target and the matching window of the
    resized condition (the UNet is fully convolutional, so it samples full images later).
    The "blur" degradation uses the stage's BLUR_RANGES. The degradation is kept in the
    checkpoint, and a resume with another one is refused.
    """

    def __init__(self, config: UpsamplerConfig, source: SceneSource, *,
                 stage: str = "upsampler", degradation: Degradation = "blur",
                 crop: int | None = None, seed: int = 0,
                 loss_terms: UpsamplerLoss | None = None) -> None:
        if stage not in UPSAMPLER_STAGES:
            raise ValueError(f"unknown upsampler stage {stage!r}; allowed: {UPSAMPLER_STAGES}")
        if degradation not in DEGRADATIONS:
            raise ValueError(f"unknown degradation {degradation!r}; allowed: {DEGRADATIONS}")
        if crop is not None and not 0 < crop <= config.image_size:
            raise ValueError(f"crop must be in 1..{config.image_size}, got {crop}")
        self.terms = loss_terms or UpsamplerLoss()
        if self.terms.l1_weight and config.diffusion.prediction != "x0":
            raise ValueError(f"an L1 term needs an x0-predicting upsampler, got prediction "
                             f"{config.diffusion.prediction!r}")
        self.stage = stage
        self.config = config.to_dict()
        self.cfg = config
        self.source = source
        self.degradation, self.crop, self.seed = degradation, crop, seed
        self.blur: BlurRanges = BLUR_RANGES[stage]
        self.model = UpsamplerPair(config)
        self.diffusion = diffusion_from_config(config.diffusion)

    def inputs(self, step: int, noise: torch.Generator) -> tuple[Tensor, Tensor]:
        """(x0 target, resized degraded condition) of the step's batch, cropped if asked."""
        batch = self.source.batch(step)
        device = noise.device
        x0 = to_model_range(batch.renders[self.cfg.image_size], device)
        low = to_model_range(batch.renders[self.cfg.low_res_size], device)
        rng = np.random.default_rng([self.seed, step, 5])  # resumes exactly, like the data
        if self.degradation == "blur":
            low = blur_noise_degrade(low, noise, self.blur)
        else:
            low = bsr_degrade(low, rng)
        cond = resize_low_res(low, self.cfg.image_size)
        if self.crop is not None and self.crop < self.cfg.image_size:
            align = self.cfg.image_size // self.cfg.low_res_size
            origins = crop_origins(batch.scenes, self.cfg.image_size, self.crop, rng, align=align)
            x0, cond = take_crops(x0, origins, self.crop), take_crops(cond, origins, self.crop)
        return x0, cond

    def loss(self, step: int, noise: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        x0, cond = self.inputs(step, noise)
        device = noise.device
        last = self.diffusion.num_timesteps - 1
        t = torch.randint(0, last + 1, (x0.shape[0],), generator=noise, device=device)
        if self.terms.last_step_share:  # drawn only when asked, so older runs resume exactly
            at_last = torch.rand(x0.shape[0], generator=noise, device=device)
            t = torch.where(at_last < self.terms.last_step_share, last, t)
        eps = torch.randn(x0.shape, generator=noise, device=device)
        net = self.model.model_first_steps
        outputs: list[Tensor] = []

        def model_fn(x: Tensor, tt: Tensor, **kw: Any) -> Tensor:
            out = net(x, tt, **kw).float()
            outputs.append(out)
            return out

        losses = self.diffusion.training_losses(model_fn, x0, t, noise=eps,
                                                model_kwargs={"low_res": cond})
        loss = losses.loss.mean()
        if not self.terms.l1_weight:
            return loss, {}
        l1 = (outputs[0] - x0).abs().mean()  # the output is the x0 estimate (checked above)
        return loss + self.terms.l1_weight * l1, {"mse": losses.mse.mean().item(),
                                                  "l1": l1.item()}

    def warm_start(self, family_dir: Path) -> None:
        """Start from this stage's weights in a model family of the same config."""
        load_weights(self.model, Path(family_dir) / WEIGHT_FILES[self.stage])

    def extra_state(self) -> dict[str, Any]:
        return {"degradation": self.degradation}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        # checkpoints from before the option trained on the stage's only degradation then
        saved = extra.get("degradation", "bsr" if self.stage == "upsampler256" else "blur")
        if saved != self.degradation:
            raise ValueError(f"the checkpoint trained with degradation {saved!r}; resume with "
                             f"the same (--degradation {saved}), got {self.degradation!r}")


@torch.no_grad()
def upsampler_psnr(pair: UpsamplerPair, *, batch_size: int = 32, steps: int = 4,
                   seed: int = HELD_SEED) -> dict[str, float]:
    """PSNR of DDIM-upsampled held 32 px renders against the true 64 px renders, and bicubic's."""
    cfg = pair.cfg
    batch = SceneSource(batch_size, sizes=(cfg.image_size, cfg.low_res_size), seed=seed).batch(0)
    device = next(pair.parameters()).device
    target = to_model_range(batch.renders[cfg.image_size], device)
    cond = resize_low_res(to_model_range(batch.renders[cfg.low_res_size], device), cfg.image_size)
    diffusion = respaced(diffusion_from_config(cfg.diffusion), f"trailing{steps}")
    gens = [torch.Generator().manual_seed(seed + i) for i in range(batch_size)]
    x = torch.stack([torch.randn(target.shape[1:], generator=g) for g in gens]).to(device)
    net = pair.model_first_steps

    def model_fn(x_t: Tensor, t: Tensor) -> Tensor:
        return net(x_t, t, low_res=cond).float()

    out = sample_ddim(model_fn, x, diffusion, generators=gens)
    return {"psnr_db": psnr(out, target), "bicubic_psnr_db": psnr(cond.clamp(-1, 1), target)}


def load_trained_upsampler(stage_dir: Path) -> UpsamplerPair:
    """The EMA upsampler (either stage) of a training run."""
    state = load_checkpoint(checkpoint_path(stage_dir))
    if state.stage not in UPSAMPLER_STAGES:
        raise ValueError(f"{stage_dir} holds a {state.stage!r} checkpoint, expected one of "
                         f"{UPSAMPLER_STAGES}")
    pair = UpsamplerPair(UpsamplerConfig.from_dict(state.config))
    pair.load_state_dict(state.ema["shadow"])
    return pair.eval()


@dataclass(frozen=True)
class UpsamplerStageResult:
    loop: LoopResult
    metrics: dict[str, float]


def train_upsampler(opts: LoopOptions, *, batch_size: int = 32,
                    config: UpsamplerConfig | None = None) -> UpsamplerStageResult:
    """Train (or resume) the upsampler into opts.out_dir (it needs no CLIP)."""
    cfg = config or shapes_upsampler_config()
    source = SceneSource(batch_size, sizes=(cfg.image_size, cfg.low_res_size), seed=opts.seed)
    result = run_training(UpsamplerTask(cfg, source, seed=opts.seed), opts)
    pair = load_trained_upsampler(opts.out_dir).to(torch.device(opts.device))
    return UpsamplerStageResult(result, upsampler_psnr(pair))


UPSAMPLER256_CROP = 64  # a quarter of the side, as DALL-E 2 crops its upsamplers' targets


def train_upsampler256(opts: LoopOptions, *, batch_size: int = 16,
                       config: UpsamplerConfig | None = None, crop: int = UPSAMPLER256_CROP,
                       loss_terms: UpsamplerLoss | None = None,
                       degradation: Degradation = "blur") -> UpsamplerStageResult:
    """Train (or resume) the 64 -> 256 upsampler on crops of degraded inputs, no CLIP.

    "blur" (CASCADE_BLUR, the default since round 3 of issue 12: 1.90 px edges through the
    cascade against BSR's 2.45 px) or "bsr", BSR-style (the only one before).
    """
    cfg = config or shapes_upsampler256_config()
    source = SceneSource(batch_size, sizes=(cfg.image_size, cfg.low_res_size), seed=opts.seed)
    task = UpsamplerTask(cfg, source, stage="upsampler256", degradation=degradation, crop=crop,
                         seed=opts.seed, loss_terms=loss_terms)
    result = run_training(task, opts)
    pair = load_trained_upsampler(opts.out_dir).to(torch.device(opts.device))
    return UpsamplerStageResult(result, upsampler_edge_metrics(pair, n=16))
