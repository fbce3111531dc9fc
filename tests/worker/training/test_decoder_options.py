"""Decoder training options of issue 12: explicit row shares and attention at 16 px too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worker.training.family_configs import shapes_decoder_config
from worker.training.train_decoder import RowMix
from worker.unclip.nets import DecoderNet
from worker.unclip.nets.unet import AttentionBlock


def test_row_mix_gives_each_condition_its_share() -> None:
    mix = RowMix(text_only=0.25, image_only=0.35, neither=0.1)
    keep_caption, keep_emb = mix.draw(np.random.default_rng(0), 20_000)
    assert np.mean(keep_caption & ~keep_emb) == pytest.approx(0.25, abs=0.015)
    assert np.mean(~keep_caption & keep_emb) == pytest.approx(0.35, abs=0.015)
    assert np.mean(~keep_caption & ~keep_emb) == pytest.approx(0.1, abs=0.01)
    assert np.mean(keep_caption & keep_emb) == pytest.approx(0.3, abs=0.015)
    with pytest.raises(ValueError, match="sum below 1"):
        RowMix(text_only=0.5, image_only=0.5, neither=0.0)


def test_attention_at_16_px_adds_attention_blocks_and_runs() -> None:
    def count(net: DecoderNet) -> int:
        return sum(isinstance(m, AttentionBlock) for m in net.modules())

    torch.manual_seed(0)
    base, wide = DecoderNet(shapes_decoder_config()), DecoderNet(shapes_decoder_config((16, 8)))
    assert count(wide) > count(base)
    cfg = wide.cfg
    x = torch.randn(2, cfg.in_channels, 32, 32)
    out = wide(
        x,
        torch.tensor([10, 500]),
        image_emb=torch.randn(2, cfg.clip_dim),
        text_emb=torch.randn(2, cfg.text_width),
        text_tokens=torch.randn(2, cfg.text_ctx, cfg.text_width),
        text_mask=torch.ones(2, cfg.text_ctx, dtype=torch.bool),
    )
    assert out.shape == (2, cfg.out_channels, 32, 32)
