"""Space-to-depth and residual upsamplers: shapes, the untrained residual net is bicubic, checks."""

from __future__ import annotations

import pytest
import torch

from worker.unclip.configs import ConfigError, DiffusionConfig, UpsamplerConfig
from worker.unclip.nets import UpsamplerPair, resize_low_res


def _cfg(**kw: object) -> UpsamplerConfig:
    base: dict[str, object] = dict(
        image_size=64,
        low_res_size=16,
        model_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        last_step_model=False,
        patch_size=4,
        diffusion=DiffusionConfig("cosine", 1000, "x0", "fixed_small"),
    )
    return UpsamplerConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_a_patched_net_runs_at_any_multiple_of_its_patch() -> None:
    torch.manual_seed(0)
    pair = UpsamplerPair(_cfg())
    for side in (32, 64):  # a training crop and the full image
        x = torch.randn(2, 3, side, side)
        out = pair(x, torch.tensor([1, 900]), low_res=torch.randn(2, 3, side // 4, side // 4))
        assert out.shape == (2, 3, side, side)
    with pytest.raises(ValueError, match="multiple of its patch_size 4"):
        pair(torch.randn(1, 3, 30, 30), torch.tensor([1]), low_res=torch.randn(1, 3, 30, 30))


def test_the_untrained_residual_net_returns_bicubic() -> None:
    pair = UpsamplerPair(_cfg(residual=True))
    low = torch.rand(1, 3, 16, 16) * 2 - 1
    out = pair(torch.randn(1, 3, 64, 64), torch.tensor([500]), low_res=low)
    assert torch.allclose(out, resize_low_res(low, 64))


def test_bad_patch_and_residual_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="divisible by patch_size"):
        _cfg(image_size=66)
    with pytest.raises(ConfigError, match="must be divisible by 2"):
        _cfg(image_size=68)  # 68 / 4 = 17 px trunk, two levels
    with pytest.raises(ConfigError, match="residual needs x0"):
        _cfg(residual=True, diffusion=DiffusionConfig("cosine", 1000, "eps", "fixed_small"))
    assert UpsamplerConfig.from_dict(_cfg(residual=True).to_dict()).residual
