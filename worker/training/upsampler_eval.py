"""Held-out measures of an upsampler: PSNR and edge width against the true renders, and bicubic."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from worker.shapes.edge_width import EdgeWidth, scene_edge_width
from worker.shapes.scenes import Scene
from worker.training.data import SceneSource, to_model_range
from worker.unclip.diffusion.gaussian_diffusion import diffusion_from_config
from worker.unclip.diffusion.respace import respaced
from worker.unclip.diffusion.samplers import sample_ddim
from worker.unclip.nets.upsampler_net import UpsamplerPair, resize_low_res

HELD_SEED = 10_000_019  # scenes no training step draws (training seeds are small)


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of images in [-1, 1]."""
    mse = float(((a - b) / 2).pow(2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def sample_upsampler(
    pair: UpsamplerPair, low_res: Tensor, *, steps: int = 4, seed: int = HELD_SEED
) -> Tensor:
    """DDIM over `steps` trailing steps: (B, 3, S, S) in [-1, 1] from low_res (B, 3, s, s)."""
    cfg = pair.cfg
    device = next(pair.parameters()).device
    cond = resize_low_res(low_res.to(device).clamp(-1, 1), cfg.image_size)
    diffusion = respaced(diffusion_from_config(cfg.diffusion), f"trailing{steps}")
    gens = [torch.Generator().manual_seed(seed + i) for i in range(low_res.shape[0])]
    shape = (3, cfg.image_size, cfg.image_size)
    x = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)
    net = pair.model_first_steps

    def model_fn(x_t: Tensor, t: Tensor) -> Tensor:
        return net(x_t, t, low_res=cond).float()

    out = sample_ddim(model_fn, x, diffusion, generators=gens)
    return out.clamp(-1, 1).float().cpu()


def to_pixels(images: Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] -> float (B, H, W, 3) in 0..255, rounded as a PNG would be."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()


def edge_width_of(images: Tensor, scenes: Sequence[Scene]) -> EdgeWidth:
    """Edge width summed over the one-object scenes (others are skipped)."""
    total = EdgeWidth(0.0, 0.0)
    for image, scene in zip(to_pixels(images), scenes, strict=True):
        measured = scene_edge_width(image, scene)
        if measured is not None:
            total = total + measured
    return total


def bicubic(low_res: Tensor, size: int) -> Tensor:
    """The baseline: antialiased bicubic resize, clamped."""
    return resize_low_res(low_res.float(), size).clamp(-1, 1)


@torch.no_grad()
def upsampler_edge_metrics(
    pair: UpsamplerPair, *, n: int = 24, steps: int = 4, seed: int = HELD_SEED
) -> dict[str, float]:
    """On n held-out scenes, the clean low-res render upsampled by `pair` and by bicubic:
    PSNR against the true high-res render and the edge width (px at the high size)."""
    cfg = pair.cfg
    batch = SceneSource(n, sizes=(cfg.image_size, cfg.low_res_size), seed=seed).batch(0)
    target = to_model_range(batch.renders[cfg.image_size])
    low = to_model_range(batch.renders[cfg.low_res_size])
    out = sample_upsampler(pair, low, steps=steps, seed=seed)
    base = bicubic(low, cfg.image_size)
    return {
        "psnr_db": psnr(out, target),
        "bicubic_psnr_db": psnr(base, target),
        "edge_px": edge_width_of(out, batch.scenes).width_px,
        "bicubic_edge_px": edge_width_of(base, batch.scenes).width_px,
        "true_edge_px": edge_width_of(target, batch.scenes).width_px,
    }
