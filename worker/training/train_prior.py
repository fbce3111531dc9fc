"""Stage 2: train the diffusion prior on frozen CLIP embeddings (x0 prediction, text dropout)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor

from worker.training.clip_features import clip_features, embedding_stats
from worker.training.data import SceneSource, drop_captions
from worker.training.family_configs import shapes_prior_config
from worker.training.loop import LoopOptions, LoopResult, run_training
from worker.training.train_clip import load_trained_clip
from worker.training.warm_start import load_weights
from worker.unclip.clip_encoder import ClipEncoder
from worker.unclip.configs import PriorConfig
from worker.unclip.diffusion.gaussian_diffusion import diffusion_from_config
from worker.unclip.diffusion.respace import respaced
from worker.unclip.diffusion.samplers import sample_ddim
from worker.unclip.nets.prior_net import PriorNet, denormalise_image_emb, normalise_image_emb

HELD_SEED = 10_000_019
DROP_STREAM = 1  # the caption-dropout coin flips of step k come from rng (seed, k, 1)


class PriorTask:
    """Denoise normalised CLIP image embeddings given the caption's CLIP text features."""

    stage = "prior"

    def __init__(self, config: PriorConfig, clip: ClipEncoder, source: SceneSource, *,
                 stats_batches: int = 16) -> None:
        if clip.config.embed_dim != config.clip_dim:
            raise ValueError(f"prior clip_dim {config.clip_dim} != CLIP embed_dim "
                             f"{clip.config.embed_dim}")
        self.config = config.to_dict()
        self.cfg = config
        self.clip = clip
        self.source = source
        self.model = PriorNet(config)
        self.diffusion = diffusion_from_config(config.diffusion)
        self.mean, self.std = embedding_stats(clip, batches=stats_batches,
                                              batch_size=source.batch_size)

    def loss(self, step: int, noise: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        batch = self.source.batch(step)
        rng = np.random.default_rng([self.source.seed, step, DROP_STREAM])
        captions, _ = drop_captions(batch.captions, self.cfg.text_drop, rng)
        feats = clip_features(self.clip, batch.images, captions)
        device = feats.image_emb.device
        z0 = normalise_image_emb(feats.image_emb, self.mean.to(device), self.std.to(device))
        b = z0.shape[0]
        t = torch.randint(0, self.diffusion.num_timesteps, (b,), generator=noise, device=device)
        eps = torch.randn(z0.shape, generator=noise, device=device)
        losses = self.diffusion.training_losses(
            lambda x, tt, **kw: self.model(x, tt, **kw).float(), z0, t, noise=eps,
            model_kwargs={"text_emb": feats.text_emb, "text_tokens": feats.text_tokens,
                          "text_mask": feats.text_mask},
        )
        return losses.loss.mean(), {}

    def warm_start(self, family_dir: Path) -> None:
        """Start from the prior weights of a model family of the same config, and keep the
        embedding stats it was trained with (recomputing them would shift its inputs)."""
        load_weights(self.model, Path(family_dir) / "prior.safetensors")
        stats = load_file(str(Path(family_dir) / "prior_stats.safetensors"))
        if stats["mean"].shape != self.mean.shape or stats["std"].shape != self.std.shape:
            raise ValueError(
                f"warm start: {family_dir}/prior_stats.safetensors holds stats of size "
                f"{tuple(stats['mean'].shape)}, expected {tuple(self.mean.shape)}")
        self.mean = stats["mean"].to(self.mean.dtype)
        self.std = stats["std"].to(self.std.dtype)

    def extra_state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        self.mean, self.std = extra["mean"], extra["std"]


@torch.no_grad()
def prior_agreement(
    net: PriorNet, clip: ClipEncoder, mean: Tensor, std: Tensor, *,
    batch_size: int = 128, steps: int = 10, seed: int = HELD_SEED,
) -> dict[str, float]:
    """Cosine between sampled and true image embeddings of held captions (DDIM, no guidance),
    against the cosine between true embeddings of different scenes (the chance level)."""
    batch = SceneSource(batch_size, seed=seed).batch(0)
    feats = clip_features(clip, batch.images, batch.captions)
    diffusion = respaced(diffusion_from_config(net.cfg.diffusion), f"trailing{steps}")
    gens = [torch.Generator().manual_seed(seed + i) for i in range(batch_size)]
    x = torch.stack([torch.randn(net.cfg.clip_dim, generator=g) for g in gens])

    def model_fn(x_t: Tensor, t: Tensor) -> Tensor:
        return net(x_t, t, text_emb=feats.text_emb, text_tokens=feats.text_tokens,
                   text_mask=feats.text_mask).float()

    z = sample_ddim(model_fn, x, diffusion, generators=gens, clip_x0=net.cfg.diffusion.clamp_x0)
    sampled = denormalise_image_emb(z, mean, std)
    true = feats.image_emb
    cos = torch.nn.functional.cosine_similarity(sampled, true, dim=-1).mean()
    chance = torch.nn.functional.cosine_similarity(true, true.roll(1, dims=0), dim=-1).mean()
    return {"sample_true_cosine": float(cos), "chance_cosine": float(chance)}


@dataclass(frozen=True)
class PriorStageResult:
    loop: LoopResult
    metrics: dict[str, float]


def load_trained_prior(stage_dir: Path) -> tuple[PriorNet, Tensor, Tensor]:
    """EMA prior of a training run and its embedding stats (mean, std)."""
    from worker.training.checkpoint import checkpoint_path, load_checkpoint

    state = load_checkpoint(checkpoint_path(stage_dir))
    if state.stage != "prior":
        raise ValueError(f"{stage_dir} holds a {state.stage!r} checkpoint, expected 'prior'")
    net = PriorNet(PriorConfig.from_dict(state.config))
    net.load_state_dict(state.ema["shadow"])
    return net.eval(), state.extra["mean"], state.extra["std"]


def train_prior(opts: LoopOptions, *, clip_dir: Path, batch_size: int = 256,
                config: PriorConfig | None = None) -> PriorStageResult:
    """Train (or resume) the prior into opts.out_dir on the frozen CLIP of clip_dir."""
    clip = load_trained_clip(clip_dir, opts.device)
    task = PriorTask(config or shapes_prior_config(), clip,
                     SceneSource(batch_size, seed=opts.seed))
    result = run_training(task, opts)
    net, mean, std = load_trained_prior(opts.out_dir)
    metrics = prior_agreement(net.to(clip.device), clip, mean.to(clip.device), std.to(clip.device))
    return PriorStageResult(result, metrics)
