"""DecoderNet: shapes, the 7-channel layout, the null image embedding and context reuse."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from worker.unclip.configs import DecoderConfig, DiffusionConfig
from worker.unclip.nets import DecoderNet, pad_decoder_input_channels
from worker.unclip.nets.unet import AttentionBlock


def _cond(cfg: DecoderConfig, b: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, cfg.text_ctx, dtype=torch.bool)
    mask[0, 2:] = False
    return {
        "image_emb": torch.randn(b, cfg.clip_dim, generator=g),
        "text_emb": torch.randn(b, cfg.clip_dim, generator=g),
        "text_tokens": torch.randn(b, cfg.text_ctx, cfg.text_width, generator=g),
        "text_mask": mask,
    }


def _net(cfg: DecoderConfig, seed: int = 0) -> DecoderNet:
    torch.manual_seed(seed)
    net = DecoderNet(cfg).eval()
    with torch.no_grad():  # zero-initialised output layers would hide most of the network
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def _x(cfg: DecoderConfig, channels: int, b: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randn(b, channels, cfg.image_size, cfg.image_size, generator=g)


T = torch.tensor([10, 700])


@torch.no_grad()
def test_decoder_shapes_learned_and_fixed_variance(tiny_decoder_cfg: DecoderConfig) -> None:
    out = _net(tiny_decoder_cfg)(_x(tiny_decoder_cfg, 7), T, **_cond(tiny_decoder_cfg))
    assert out.shape == (2, 6, 16, 16) and out.dtype == torch.float32
    fixed = dataclasses.replace(tiny_decoder_cfg, diffusion=DiffusionConfig())
    out = _net(fixed)(_x(fixed, 7), T, **_cond(fixed))
    assert out.shape == (2, 3, 16, 16)


@torch.no_grad()
def test_three_channel_input_means_nothing_known(tiny_decoder_cfg: DecoderConfig) -> None:
    net, x = _net(tiny_decoder_cfg), _x(tiny_decoder_cfg, 3)
    padded = torch.cat([x, torch.zeros(2, 4, 16, 16)], dim=1)
    cond = _cond(tiny_decoder_cfg)
    torch.testing.assert_close(net(x, T, **cond), net(padded, T, **cond), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_three_channel_weights_load_into_seven_channel_net(
    tiny_decoder_cfg: DecoderConfig,
) -> None:
    three = _net(dataclasses.replace(tiny_decoder_cfg, in_channels=3))
    seven = DecoderNet(tiny_decoder_cfg).eval()
    seven.load_state_dict(pad_decoder_input_channels(three.state_dict()), strict=True)
    x, cond = _x(tiny_decoder_cfg, 3), _cond(tiny_decoder_cfg)
    known = torch.cat([torch.randn(2, 3, 16, 16), torch.ones(2, 1, 16, 16)], dim=1)
    expected = three(x, T, **cond)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(seven(torch.cat([x, known], 1), T, **cond), expected)


def test_padding_refuses_other_layouts() -> None:
    with pytest.raises(ValueError, match="3-channel"):
        pad_decoder_input_channels({"input_blocks.0.0.weight": torch.zeros(32, 5, 3, 3)})
    with pytest.raises(KeyError, match="model."):
        pad_decoder_input_channels({"model.input_blocks.0.0.weight": torch.zeros(32, 3, 3, 3)})


@torch.no_grad()
def test_keep_image_emb_false_uses_cf_param(tiny_decoder_cfg: DecoderConfig) -> None:
    net, x, cond = _net(tiny_decoder_cfg), _x(tiny_decoder_cfg, 7), _cond(tiny_decoder_cfg)
    keep = torch.tensor([True, False])
    out = net(x, T, **cond, keep_image_emb=keep)
    null_cond = dict(cond, image_emb=torch.stack([cond["image_emb"][0], net.cf_param]))
    torch.testing.assert_close(out, net(x, T, **null_cond))
    assert not torch.allclose(out[1], net(x, T, **cond)[1])


@torch.no_grad()
def test_padded_text_tokens_are_ignored(tiny_decoder_cfg: DecoderConfig) -> None:
    net, x, cond = _net(tiny_decoder_cfg), _x(tiny_decoder_cfg, 7), _cond(tiny_decoder_cfg)
    changed = dict(cond, text_tokens=cond["text_tokens"].clone())
    changed["text_tokens"][0, 2:] = 9.0
    torch.testing.assert_close(net(x, T, **cond), net(x, T, **changed))


@torch.no_grad()
def test_context_reused_across_steps_matches_forward(tiny_decoder_cfg: DecoderConfig) -> None:
    net, cond = _net(tiny_decoder_cfg), _cond(tiny_decoder_cfg)
    ctx = net.encode_context(**cond)
    for step, t in enumerate((torch.tensor([999, 999]), torch.tensor([3, 500]))):
        x = _x(tiny_decoder_cfg, 7) + step
        torch.testing.assert_close(net.denoise(x, t, ctx), net(x, t, **cond))
    blocks = [m for m in net.modules() if isinstance(m, AttentionBlock)]
    assert len(blocks) == 4 and set(ctx.attention.kv) == {id(m) for m in blocks}  # all cached


def test_no_null_embedding_without_image_drop(tiny_decoder_cfg: DecoderConfig) -> None:
    net = _net(dataclasses.replace(tiny_decoder_cfg, clip_emb_drop=0.0))
    assert "cf_param" not in net.state_dict()
    with pytest.raises(ValueError, match="clip_emb_drop"):
        net(_x(tiny_decoder_cfg, 7), T, **_cond(tiny_decoder_cfg), keep_image_emb=torch.ones(2))


@torch.no_grad()
def test_decoder_bf16(tiny_decoder_cfg: DecoderConfig) -> None:
    net, x, cond = _net(tiny_decoder_cfg), _x(tiny_decoder_cfg, 7), _cond(tiny_decoder_cfg)
    ref = net(x, T, **cond)
    out = net.to(torch.bfloat16)(x, T, **cond)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()
