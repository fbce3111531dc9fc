"""UpsamplerNet and UpsamplerPair: shapes, low-res conditioning and the last-step network."""

from __future__ import annotations

import dataclasses

import torch

from worker.unclip.configs import UpsamplerConfig
from worker.unclip.nets import UpsamplerPair, resize_low_res
from worker.unclip.nets.unet import AttentionBlock

T = torch.tensor([0, 640])


def _pair(cfg: UpsamplerConfig) -> UpsamplerPair:
    torch.manual_seed(0)
    pair = UpsamplerPair(cfg).eval()
    with torch.no_grad():
        for p in pair.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return pair


def _images(cfg: UpsamplerConfig) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, cfg.image_size, cfg.image_size, generator=g)
    low = torch.rand(2, 3, cfg.low_res_size, cfg.low_res_size, generator=g) * 2 - 1
    return x, low


@torch.no_grad()
def test_upsampler_shapes_and_no_attention(tiny_upsampler_cfg: UpsamplerConfig) -> None:
    pair = _pair(tiny_upsampler_cfg)
    x, low = _images(tiny_upsampler_cfg)
    out = pair(x, T, low_res=low)
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.float32
    assert not any(isinstance(m, AttentionBlock) for m in pair.modules())
    assert pair.model_first_steps.input_blocks[0][0].in_channels == 6


@torch.no_grad()
def test_low_res_resized_inside_equals_resized_outside(
    tiny_upsampler_cfg: UpsamplerConfig,
) -> None:
    net = _pair(tiny_upsampler_cfg).model_first_steps
    x, low = _images(tiny_upsampler_cfg)
    big = resize_low_res(low, 16)
    assert big.shape == (2, 3, 16, 16)
    torch.testing.assert_close(net(x, T, low_res=low), net(x, T, low_res=big))
    assert not torch.allclose(net(x, T, low_res=low), net(x, T, low_res=-big))


@torch.no_grad()
def test_last_step_network_is_separate(tiny_upsampler_cfg: UpsamplerConfig) -> None:
    pair = _pair(tiny_upsampler_cfg)
    x, low = _images(tiny_upsampler_cfg)
    assert not torch.allclose(pair(x, T, low_res=low), pair(x, T, low_res=low, last=True))
    single = UpsamplerPair(dataclasses.replace(tiny_upsampler_cfg, last_step_model=False))
    assert single.model_last_step is None
    assert not any(k.startswith("model_last_step.") for k in single.state_dict())
    assert single.net_for_step(last=True) is single.model_first_steps
