"""Tiny seeded stage configs and a random tiny CLIP for the training tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from worker.training.data import SceneSource
from worker.training.train_clip import ClipTask
from worker.training.train_decoder import DecoderTask
from worker.training.train_prior import PriorTask
from worker.training.train_upsampler import UpsamplerTask
from worker.unclip.clip_encoder import ClipEncoder
from worker.unclip.configs import (
    ClipConfig,
    DecoderConfig,
    DiffusionConfig,
    PriorConfig,
    UpsamplerConfig,
)
from worker.unclip.family import load_family

CTX = 16
WIDTH = 32


def tiny_clip_config() -> ClipConfig:
    return ClipConfig(
        name="training-test-clip", embed_dim=WIDTH, text_width=WIDTH, context_length=CTX,
        image_size=16,
        open_clip_config={
            "embed_dim": WIDTH,
            "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8,
                           "head_width": 16},
            "text_cfg": {"context_length": CTX, "vocab_size": 49408, "width": WIDTH,
                         "heads": 2, "layers": 1},
        },
    )


def tiny_prior_config() -> PriorConfig:
    return PriorConfig(clip_dim=WIDTH, text_width=WIDTH, text_ctx=CTX, width=64, layers=1,
                       heads=2, text_drop=0.1,
                       diffusion=DiffusionConfig(prediction="x0", clamp_x0=10.0))


def tiny_decoder_config() -> DecoderConfig:
    return DecoderConfig(
        image_size=16, in_channels=7, model_channels=32, channel_mult=(1, 2),
        num_res_blocks=1, attention_resolutions=(8,), num_head_channels=32, dropout=0.0,
        clip_dim=WIDTH, text_width=WIDTH, text_ctx=CTX, xf_width=32, clip_emb_drop=0.1,
        text_drop=0.5, diffusion=DiffusionConfig(variance="learned_range"),
    )


def tiny_upsampler_config() -> UpsamplerConfig:
    return UpsamplerConfig(image_size=16, low_res_size=8, model_channels=32, channel_mult=(1, 2),
                           num_res_blocks=1, last_step_model=False)


@dataclass(frozen=True)
class TinyConfigs:
    clip: ClipConfig
    prior: PriorConfig
    decoder: DecoderConfig
    upsampler: UpsamplerConfig


@pytest.fixture
def tiny() -> TinyConfigs:
    """Tiny stage configs that fit together (16 px, 32-wide CLIP, 16-token context)."""
    return TinyConfigs(tiny_clip_config(), tiny_prior_config(), tiny_decoder_config(),
                       tiny_upsampler_config())


@pytest.fixture
def tiny_clip() -> ClipEncoder:
    torch.manual_seed(0)
    return ClipEncoder.build(tiny_clip_config())


@pytest.fixture
def make_task() -> Callable[[str, Path], Any]:
    """make_task(stage, family_dir): a fresh training task of that stage, on the family's
    configs and CLIP, with tiny batches."""

    def make_task(stage: str, family_dir: Path) -> Any:
        family = load_family(family_dir)
        clip_size = family.clip_config.image_size
        if stage == "clip":
            return ClipTask(family.clip_config, SceneSource(4, sizes=(clip_size,)))
        if stage == "prior":
            return PriorTask(family.prior_config, family.clip,
                             SceneSource(4, sizes=(clip_size,)), stats_batches=1)
        if stage == "decoder":
            return DecoderTask(family.decoder_config, family.clip,
                               SceneSource(4, sizes=(family.decoder_size, clip_size)))
        cfg = family.upsampler_config
        return UpsamplerTask(cfg, SceneSource(4, sizes=(cfg.image_size, cfg.low_res_size)))

    return make_task
