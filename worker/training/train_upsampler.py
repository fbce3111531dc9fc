"""Stage 4: train the 32 -> 64 px upsampler on the shapes renders (blur/noise-augmented input)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from worker.training.checkpoint import checkpoint_path, load_checkpoint
from worker.training.data import SceneSource, to_model_range
from worker.training.family_configs import shapes_upsampler_config
from worker.training.loop import LoopOptions, LoopResult, run_training
from worker.training.warm_start import load_weights
from worker.unclip.configs import UpsamplerConfig
from worker.unclip.diffusion.gaussian_diffusion import diffusion_from_config
from worker.unclip.diffusion.respace import respaced
from worker.unclip.diffusion.samplers import sample_ddim
from worker.unclip.nets.upsampler_net import UpsamplerPair, resize_low_res

HELD_SEED = 10_000_019
BLUR_PROB = 0.5  # DALL-E 2 (s3): corrupt the low-res input of the first upsampler by blurring
BLUR_SIGMA = (0.4, 1.0)
NOISE_STD_MAX = 0.2  # and Gaussian noise: the upsampler learns to clean grainy decoder outputs


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Blur each image (B, C, H, W) with its own sigma (B,), a 5x5 separable kernel."""
    taps = torch.arange(-2, 3, device=x.device, dtype=x.dtype)  # (5,)
    kernel = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))  # (B, 5)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    b, c, h, w = x.shape
    y = x.reshape(1, b * c, h, w)
    k = kernel.repeat_interleave(c, dim=0)  # (B*C, 5)
    y = F.conv2d(F.pad(y, (2, 2, 0, 0), mode="replicate"), k[:, None, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def degrade(low_res: Tensor, gen: torch.Generator) -> Tensor:
    """Random blur (half the rows) and small Gaussian noise on the low-res condition."""
    b = low_res.shape[0]
    dev = low_res.device
    blur = torch.rand(b, generator=gen, device=dev) < BLUR_PROB
    lo, hi = BLUR_SIGMA
    sigma = lo + (hi - lo) * torch.rand(b, generator=gen, device=dev)
    out = torch.where(blur[:, None, None, None], gaussian_blur(low_res, sigma), low_res)
    std = NOISE_STD_MAX * torch.rand(b, generator=gen, device=dev)
    noise = torch.randn(low_res.shape, generator=gen, device=dev)
    return (out + std[:, None, None, None] * noise).clamp(-1.0, 1.0)


class UpsamplerTask:
    """Denoise the 64 px render given its 32 px render (bicubic-resized, degraded)."""

    stage = "upsampler"

    def __init__(self, config: UpsamplerConfig, source: SceneSource) -> None:
        self.config = config.to_dict()
        self.cfg = config
        self.source = source
        self.model = UpsamplerPair(config)
        self.diffusion = diffusion_from_config(config.diffusion)

    def loss(self, step: int, noise: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        batch = self.source.batch(step)
        device = noise.device
        x0 = to_model_range(batch.renders[self.cfg.image_size], device)
        low = to_model_range(batch.renders[self.cfg.low_res_size], device)
        cond = resize_low_res(degrade(low, noise), self.cfg.image_size)
        t = torch.randint(0, self.diffusion.num_timesteps, (x0.shape[0],), generator=noise,
                          device=device)
        eps = torch.randn(x0.shape, generator=noise, device=device)
        net = self.model.model_first_steps
        losses = self.diffusion.training_losses(
            lambda x, tt, **kw: net(x, tt, **kw).float(), x0, t, noise=eps,
            model_kwargs={"low_res": cond},
        )
        return losses.loss.mean(), {}

    def warm_start(self, family_dir: Path) -> None:
        """Start from the upsampler weights of a model family of the same config."""
        load_weights(self.model, Path(family_dir) / "upsampler.safetensors")

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        return None


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of images in [-1, 1]."""
    mse = float(((a - b) / 2).pow(2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


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
    """The EMA upsampler of a training run."""
    state = load_checkpoint(checkpoint_path(stage_dir))
    if state.stage != "upsampler":
        raise ValueError(f"{stage_dir} holds a {state.stage!r} checkpoint, expected 'upsampler'")
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
    result = run_training(UpsamplerTask(cfg, source), opts)
    pair = load_trained_upsampler(opts.out_dir).to(torch.device(opts.device))
    return UpsamplerStageResult(result, upsampler_psnr(pair))
