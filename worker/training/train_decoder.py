"""Stage 3: train the 32 px inpainting decoder on frozen CLIP image embeddings and captions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from worker.training.checkpoint import checkpoint_path, load_checkpoint
from worker.training.clip_features import ClipFeatures, clip_features
from worker.training.data import SceneSource, drop_captions, to_model_range
from worker.training.family_configs import shapes_decoder_config
from worker.training.loop import LoopOptions, LoopResult, run_training
from worker.training.masks import random_keep_masks
from worker.training.train_clip import load_trained_clip
from worker.training.warm_start import load_weights
from worker.unclip.clip_encoder import ClipEncoder
from worker.unclip.configs import DecoderConfig
from worker.unclip.diffusion.gaussian_diffusion import diffusion_from_config
from worker.unclip.nets.decoder_net import DecoderNet

DROP_STREAM = 2  # caption-dropout coin flips of step k: rng (seed, k, 2)
ROW_MIX_STREAM = 3  # per-row conditioning choices of step k with a RowMix: rng (seed, k, 3)
HELD_SEED = 10_000_019


@dataclass(frozen=True)
class RowMix:
    """Shares of training rows conditioned on the caption only (null image embedding), on the
    image embedding only (empty caption) and on neither; the rest get both.

    Without one, the config's independent drops apply (clip_emb_drop 0.1 and text_drop 0.5
    make 5% of rows text-only); issue 12 asks for more text-only and image-only rows, so the
    decoder learns layout from the caption alone and from the embedding alone.
    """

    text_only: float = 0.2
    image_only: float = 0.3
    neither: float = 0.1

    def __post_init__(self) -> None:
        shares = (self.text_only, self.image_only, self.neither)
        if min(shares) < 0 or sum(shares) >= 1:
            raise ValueError(f"row shares must be >= 0 and sum below 1, got {shares}")

    def draw(self, rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """(keep caption (B,), keep image embedding (B,)) bool arrays."""
        u = rng.random(rows)
        a, b = self.text_only, self.text_only + self.image_only
        text_only, image_only = u < a, (u >= a) & (u < b)
        neither = (u >= b) & (u < b + self.neither)
        return ~(image_only | neither), ~(text_only | neither)


class DecoderTask:
    """Denoise 32 px renders given CLIP(64 px render), the caption, and a partly known image."""

    stage = "decoder"

    def __init__(self, config: DecoderConfig, clip: ClipEncoder, source: SceneSource,
                 row_mix: RowMix | None = None) -> None:
        if clip.config.embed_dim != config.clip_dim:
            raise ValueError(f"decoder clip_dim {config.clip_dim} != CLIP embed_dim "
                             f"{clip.config.embed_dim}")
        self.config = config.to_dict()
        self.cfg = config
        self.clip = clip
        self.source = source
        self.row_mix = row_mix
        self.model = DecoderNet(config)
        self.diffusion = diffusion_from_config(config.diffusion)

    def features(self, step: int) -> tuple[Tensor, ClipFeatures]:
        """Target images (B, 3, s, s) in [-1, 1] and CLIP features (captions dropped)."""
        batch = self.source.batch(step)
        if self.row_mix is not None:
            rng = np.random.default_rng([self.source.seed, step, ROW_MIX_STREAM])
            keep_caption, _ = self.row_mix.draw(rng, len(batch.captions))
            captions = [c if k else "" for c, k in zip(batch.captions, keep_caption, strict=True)]
        else:
            rng = np.random.default_rng([self.source.seed, step, DROP_STREAM])
            captions, _ = drop_captions(batch.captions, self.cfg.text_drop, rng)
        feats = clip_features(self.clip, batch.renders[self.clip.config.image_size], captions)
        return to_model_range(batch.renders[self.cfg.image_size], feats.image_emb.device), feats

    def loss(self, step: int, noise: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        x0, feats = self.features(step)
        b, dev = x0.shape[0], x0.device
        keep_emb = torch.rand(b, generator=noise, device=dev) >= self.cfg.clip_emb_drop
        if self.row_mix is not None:  # the same draw as features(): the row's one category
            rng = np.random.default_rng([self.source.seed, step, ROW_MIX_STREAM])
            keep_emb = torch.from_numpy(self.row_mix.draw(rng, b)[1]).to(dev)
        keep = random_keep_masks(b, self.cfg.image_size, noise)  # (B, 1, s, s)
        known = torch.cat([x0 * keep, keep], dim=1)  # (B, 4, s, s)
        t = torch.randint(0, self.diffusion.num_timesteps, (b,), generator=noise, device=dev)
        eps = torch.randn(x0.shape, generator=noise, device=dev)

        def model_fn(x_t: Tensor, tt: Tensor) -> Tensor:
            x_in = torch.cat([x_t, known], dim=1) if self.cfg.in_channels == 7 else x_t
            return self.model(
                x_in, tt, image_emb=feats.image_emb, text_emb=feats.text_emb,
                text_tokens=feats.text_tokens, text_mask=feats.text_mask,
                keep_image_emb=keep_emb,
            ).float()

        losses = self.diffusion.training_losses(model_fn, x0, t, noise=eps)
        return losses.loss.mean(), {"mse": float(losses.mse.detach().mean()),
                                    "vb": float(losses.vb.detach().mean())}

    def warm_start(self, family_dir: Path) -> None:
        """Start from the decoder weights of a model family of the same config."""
        load_weights(self.model, Path(family_dir) / "decoder.safetensors")

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        return None


def load_trained_decoder(stage_dir: Path) -> DecoderNet:
    """The EMA decoder of a training run."""
    state = load_checkpoint(checkpoint_path(stage_dir))
    if state.stage != "decoder":
        raise ValueError(f"{stage_dir} holds a {state.stage!r} checkpoint, expected 'decoder'")
    net = DecoderNet(DecoderConfig.from_dict(state.config))
    net.load_state_dict(state.ema["shadow"])
    return net.eval()


@torch.no_grad()
def held_mse(task: DecoderTask, net: DecoderNet, *, seed: int = HELD_SEED) -> dict[str, float]:
    """MSE of the eps and of the x0 that `net` implies on a held batch at t = 100, 500, 900 and
    999 (nothing known, full conditioning); comparable across eps-, x0- and v-prediction nets.
    At t = 999 the x0 error says how well a few-step sampler's first step sets the colours."""
    source = SceneSource(64, sizes=task.source.sizes, seed=seed)
    batch = source.batch(0)
    feats = clip_features(task.clip, batch.renders[task.clip.config.image_size], batch.captions)
    x0 = to_model_range(batch.renders[task.cfg.image_size], feats.image_emb.device)
    gen = torch.Generator(device=x0.device).manual_seed(seed)
    out: dict[str, float] = {}
    for t_value in (100, 500, 900, 999):
        t = torch.full((x0.shape[0],), t_value, dtype=torch.long, device=x0.device)
        eps = torch.randn(x0.shape, generator=gen, device=x0.device)
        x_t = task.diffusion.q_sample(x0, t, eps)
        raw = net(x_t, t, image_emb=feats.image_emb, text_emb=feats.text_emb,
                  text_tokens=feats.text_tokens, text_mask=feats.text_mask).float()
        x0_hat, eps_hat = task.diffusion.predict_x0_eps(raw, x_t, t, clip_x0=1.0)
        out[f"held_eps_mse_t{t_value}"] = float(((eps_hat - eps) ** 2).mean())
        out[f"held_x0_mse_t{t_value}"] = float(((x0_hat - x0) ** 2).mean())
    return out


@dataclass(frozen=True)
class DecoderStageResult:
    loop: LoopResult
    metrics: dict[str, float]


def train_decoder(opts: LoopOptions, *, clip_dir: Path, batch_size: int = 32,
                  config: DecoderConfig | None = None, row_mix: RowMix | None = None,
                  attention_resolutions: tuple[int, ...] | None = None) -> DecoderStageResult:
    """Train (or resume) the decoder into opts.out_dir on the frozen CLIP of clip_dir.

    attention_resolutions (e.g. (16, 8)) picks the shapes config's attention levels; row_mix
    replaces the config's independent caption / embedding drops by explicit row shares.
    """
    clip = load_trained_clip(clip_dir, opts.device)
    if config is None and attention_resolutions is not None:
        config = shapes_decoder_config(attention_resolutions)
    cfg = config or shapes_decoder_config()
    source = SceneSource(batch_size, sizes=(cfg.image_size, clip.config.image_size),
                         seed=opts.seed)
    task = DecoderTask(cfg, clip, source, row_mix)
    result = run_training(task, opts)
    net = load_trained_decoder(opts.out_dir).to(clip.device)
    return DecoderStageResult(result, held_mse(task, net))
