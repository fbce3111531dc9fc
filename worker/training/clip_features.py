"""Frozen-CLIP features of training batches: image and text embeddings, token sequences, stats."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from worker.training.data import SceneSource, clip_pixels
from worker.unclip.clip_encoder import ClipEncoder

STATS_SEED = 20_000_003  # the images that define the prior's normalisation


@dataclass(frozen=True)
class ClipFeatures:
    """What the prior and decoder are conditioned on, for one batch."""

    image_emb: Tensor  # (B, D) CLIP image embeddings, not normalised
    text_emb: Tensor  # (B, D) pooled text embeddings
    text_tokens: Tensor  # (B, L, W) token sequence after ln_final
    text_mask: Tensor  # (B, L) bool


@torch.no_grad()
def clip_features(clip: ClipEncoder, images: np.ndarray, captions: Sequence[str]) -> ClipFeatures:
    """Features of uint8 images (B, H, W, 3) and their (possibly dropped) captions, as float32."""
    image_emb = clip.model.encode_image(clip_pixels(clip, images))
    text = clip.encode_text(captions)
    return ClipFeatures(
        image_emb=image_emb.float(), text_emb=text.pooled.float(),
        text_tokens=text.tokens.float(), text_mask=text.mask,
    )


@torch.no_grad()
def embedding_stats(clip: ClipEncoder, *, batches: int = 16, batch_size: int = 256,
                    seed: int = STATS_SEED) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std (D,) of CLIP image embeddings of fresh training scenes.

    Computed in float32 without autocast: these numbers are exported with the family.
    """
    source = SceneSource(batch_size, seed=seed)
    with torch.autocast(clip.device.type, enabled=False):
        embs = [clip.model.encode_image(clip_pixels(clip, source.batch(i).images)).float()
                for i in range(batches)]
    all_embs = torch.cat(embs)  # (N, D)
    return all_embs.mean(dim=0).cpu(), all_embs.std(dim=0).clamp_min(1e-6).cpu()
