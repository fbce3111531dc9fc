"""Stage 1: train the tiny CLIP with open_clip's contrastive loss on shapes (image, caption)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from torch import Tensor

from worker.training.checkpoint import checkpoint_path, load_checkpoint
from worker.training.clip_probes import ClipWithProbes, clip_state, scene_targets
from worker.training.data import SceneSource, clip_pixels
from worker.training.family_configs import shapes_clip_config
from worker.training.hard_negatives import negclip_loss, with_twins
from worker.training.loop import LoopOptions, LoopResult, run_training
from worker.training.warm_start import load_weights
from worker.unclip.clip_encoder import ClipEncoder
from worker.unclip.configs import ClipConfig

HELD_SEED = 10_000_019  # the held-out evaluation batch comes from its own seed


PROBE_WEIGHT = 1.0  # weight of the scene-probe loss next to the contrastive loss


class ClipTask:
    """CLIP on fresh scenes: many captions describe one scene and many scenes share a caption;
    large batches make the in-batch contrastive task informative all the same.

    The loss is open_clip's contrastive loss plus `probe_weight` times the scene-probe loss
    (worker/training/clip_probes.py); probe_weight=0 trains with the contrastive loss alone.
    With `hard_negatives`, each two-object scene adds a twin with swapped colours, swapped
    shapes or a flipped relation to the batch (worker/training/hard_negatives.py, NegCLIP).
    """

    stage = "clip"

    def __init__(
        self,
        config: ClipConfig,
        source: SceneSource,
        *,
        probe_weight: float = PROBE_WEIGHT,
        hard_negatives: bool = False,
    ) -> None:
        if probe_weight < 0:
            raise ValueError(f"probe_weight must be >= 0, got {probe_weight!r}")
        self.config = config.to_dict()
        self.encoder = ClipEncoder.build(config)
        self.model = ClipWithProbes(self.encoder.model, config.embed_dim)
        self.source = source
        self.probe_weight = probe_weight
        self.hard_negatives = hard_negatives
        self.loss_fn = open_clip.ClipLoss()

    def loss(self, step: int, noise: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        batch = self.source.batch(step)
        images, captions, scenes = batch.images, list(batch.captions), list(batch.scenes)
        if self.hard_negatives:  # seeded by (seed, step) like the batch, so resumes repeat it
            joined = with_twins(batch, np.random.default_rng([self.source.seed, step, 1]))
            images, captions, scenes = joined.images, joined.texts, joined.scenes
        pixels = clip_pixels(self.encoder, images)
        tokens, _ = self.encoder.tokenize(captions)
        image_f, text_f, scale = self.encoder.model(pixels, tokens)
        if self.hard_negatives:
            contrastive = negclip_loss(image_f.float(), text_f.float(), scale.float())
        else:
            contrastive = self.loss_fn(image_f.float(), text_f.float(), scale.float())
        metrics = {
            "logit_scale": float(scale.item()),
            "contrastive": float(contrastive.detach()),
            "hard_negatives": float(len(captions) - len(batch.captions)),
        }
        if self.probe_weight == 0:
            return contrastive, metrics
        probe, probe_metrics = self.model.probes.loss(
            image_f, scene_targets(scenes, image_f.device)
        )
        metrics.update(probe=float(probe.detach()), **probe_metrics)
        return contrastive + self.probe_weight * probe, metrics

    def warm_start(self, family_dir: Path) -> None:
        """Start from the CLIP weights of a model family (the probes start fresh)."""
        load_weights(self.encoder.model, Path(family_dir) / "clip.safetensors")

    def extra_state(self) -> dict[str, Any]:
        return {"probe_weight": self.probe_weight, "hard_negatives": self.hard_negatives}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        trained_with = bool(extra.get("hard_negatives", False))
        if trained_with != self.hard_negatives:
            raise ValueError(
                f"this checkpoint was trained with hard_negatives={trained_with}; "
                f"resume it the same way (--hard-negatives on `unclip train clip`)"
            )


@torch.no_grad()
def retrieval_top1(
    encoder: ClipEncoder, *, batch_size: int = 256, seed: int = HELD_SEED, split: str = "train"
) -> dict[str, float]:
    """Text -> image top-1 on a held batch: exact image, and an image with the same caption.

    Identical captions of different scenes make the exact-image score ambiguous, so both are
    reported.
    """
    batch = SceneSource(batch_size, seed=seed, split=split).batch(0)
    image_emb = encoder.model.encode_image(clip_pixels(encoder, batch.images))
    text_emb = encoder.encode_text(batch.captions).pooled
    sims = (
        torch.nn.functional.normalize(text_emb.float(), dim=-1)
        @ torch.nn.functional.normalize(image_emb.float(), dim=-1).T
    )  # (B, B)
    best = sims.argmax(dim=1).cpu().numpy()
    captions = np.asarray(batch.captions)
    exact = float((best == np.arange(len(best))).mean())
    same_caption = float((captions[best] == captions).mean())
    return {"text_to_image_top1": exact, "text_to_image_top1_same_caption": same_caption}


def load_trained_clip(stage_dir: Path, device: torch.device | str = "cpu") -> ClipEncoder:
    """The EMA weights of a CLIP training run, frozen, in eval mode."""
    state = load_checkpoint(checkpoint_path(stage_dir))
    if state.stage != "clip":
        raise ValueError(f"{stage_dir} holds a {state.stage!r} checkpoint, expected 'clip'")
    encoder = ClipEncoder.build(ClipConfig.from_dict(state.config))
    encoder.model.load_state_dict(clip_state(state.ema["shadow"]))
    encoder.requires_grad_(False)
    return encoder.to(torch.device(device)).eval()


@dataclass(frozen=True)
class ClipStageResult:
    loop: LoopResult
    metrics: dict[str, float]


def train_clip(
    opts: LoopOptions,
    *,
    batch_size: int = 256,
    config: ClipConfig | None = None,
    probe_weight: float = PROBE_WEIGHT,
    hard_negatives: bool = False,
) -> ClipStageResult:
    """Train (or resume) CLIP into opts.out_dir; report held-batch retrieval of the EMA model."""
    task = ClipTask(
        config or shapes_clip_config(),
        SceneSource(batch_size, seed=opts.seed),
        probe_weight=probe_weight,
        hard_negatives=hard_negatives,
    )
    result = run_training(task, opts)
    encoder = load_trained_clip(opts.out_dir, opts.device)
    return ClipStageResult(result, retrieval_top1(encoder))
