"""UpsamplerNet: attention-free super-resolution UNet on [x_t, resized low-res image] (Karlo SR)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from worker.unclip.configs import UpsamplerConfig
from worker.unclip.nets.unet_backbone import UNetBackbone, UNetLayout


def resize_low_res(low_res: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic, antialiased resize (B, 3, h, w) -> (B, 3, size, size), as Karlo's sampler does.

    Karlo clamps the 64 px decoder output to [-1, 1] and resizes it once with torchvision's
    `resize(..., BICUBIC, antialias=True)`, which for tensors is this interpolate call.
    """
    if low_res.shape[-2:] == (size, size):
        return low_res
    out = F.interpolate(
        low_res.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True
    )
    return out.to(low_res.dtype)


def upsampler_layout(cfg: UpsamplerConfig) -> UNetLayout:
    """The UNet trunk sizes of an upsampler config: 6 input channels per pixel of a
    patch_size x patch_size block, no attention."""
    block = cfg.patch_size**2
    return UNetLayout(
        in_channels=6 * block,
        model_channels=cfg.model_channels,
        out_channels=cfg.out_channels * block,
        num_res_blocks=cfg.num_res_blocks,
        channel_mult=cfg.channel_mult,
        attention_ds=(),
        dropout=cfg.dropout,
        use_scale_shift_norm=cfg.use_scale_shift_norm,
        resblock_updown=cfg.resblock_updown,
        middle_attention=False,
    )


class UpsamplerNet(UNetBackbone):
    """One super-resolution UNet (Karlo SuperResUNetModel layout, no attention).

    forward(x (B, 3, H, W), t (B,) long, *, low_res (B, 3, h, w)) -> (B, out_ch, H, W) in
    x's dtype, out_ch 3 (eps) or 6 with learned-range variance. low_res is resized to
    H x W (bicubic, antialiased: `resize_low_res`) when its size differs, then concatenated
    to x on the channel axis. Samplers should resize once with `resize_low_res` and pass the
    full-size image, so no step repeats the resize. With cfg.patch_size p > 1 the pair is
    folded into (6 p^2, H/p, W/p) before the trunk and its output unfolded (space-to-depth,
    as sub-pixel convolution does: Shi et al. 2016), so the trunk runs at 1/p^2 the cost;
    H and W must then be multiples of p. With cfg.residual the output is x0 minus the
    resized low-res image, added back here.
    """

    def __init__(self, cfg: UpsamplerConfig) -> None:
        super().__init__(upsampler_layout(cfg))
        self.cfg = cfg

    def forward(self, x: torch.Tensor, t: torch.Tensor, *, low_res: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"upsampler needs square images, got {tuple(x.shape[-2:])}")
        cond = resize_low_res(low_res, x.shape[-1])
        h = torch.cat([x, cond.to(x.dtype)], dim=1).to(self.dtype)
        p = self.cfg.patch_size
        if p > 1:
            if x.shape[-1] % p:
                raise ValueError(f"upsampler input side {x.shape[-1]} must be a multiple of "
                                 f"its patch_size {p}")
            h = F.pixel_unshuffle(h, p)  # (B, 6 p^2, H/p, W/p)
        out = self.run_trunk(self.stem(h), self.embed_time(t))
        if p > 1:
            out = F.pixel_shuffle(out, p)  # (B, out_ch, H, W)
        if self.cfg.residual:  # the net predicts x0 - bicubic(low_res)
            out = out + cond.to(out.dtype)
        return out.to(x.dtype)


class UpsamplerPair(nn.Module):
    """model_first_steps (every step but the last) and, optionally, model_last_step.

    Karlo's improved SR runs all steps but the last with the first network and the last
    step with a separately fine-tuned one; without `model_last_step` the first network
    runs every step.
    """

    def __init__(self, cfg: UpsamplerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model_first_steps = UpsamplerNet(cfg)
        self.model_last_step = UpsamplerNet(cfg) if cfg.last_step_model else None

    def net_for_step(self, last: bool) -> UpsamplerNet:
        """The network for a step: the last-step one when `last` and it exists."""
        if last and self.model_last_step is not None:
            return self.model_last_step
        return self.model_first_steps

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, *, low_res: torch.Tensor, last: bool = False
    ) -> torch.Tensor:
        """x (B, 3, H, W), t (B,), low_res (B, 3, h, w) -> (B, out_ch, H, W)."""
        return self.net_for_step(last)(x, t, low_res=low_res)
