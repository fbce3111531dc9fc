"""Tiny seeded configs for the network tests."""

from __future__ import annotations

import pytest

from worker.unclip.configs import DecoderConfig, DiffusionConfig, PriorConfig, UpsamplerConfig


@pytest.fixture
def tiny_prior_cfg() -> PriorConfig:
    return PriorConfig(clip_dim=16, text_width=24, text_ctx=6, width=32, layers=2, heads=4)


@pytest.fixture
def tiny_decoder_cfg() -> DecoderConfig:
    return DecoderConfig(
        image_size=16,
        in_channels=7,
        model_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(8,),
        num_head_channels=16,
        dropout=0.0,
        clip_dim=16,
        text_width=24,
        text_ctx=6,
        xf_width=32,
        clip_emb_mult=4,
    )


@pytest.fixture
def tiny_upsampler_cfg() -> UpsamplerConfig:
    return UpsamplerConfig(
        image_size=16,
        low_res_size=8,
        model_channels=32,
        channel_mult=(1, 1),
        num_res_blocks=1,
        diffusion=DiffusionConfig(variance="fixed_small"),
    )
