"""GLIDE-style UNet blocks (Karlo / guided-diffusion parameter names): norms, res and attention."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from worker.unclip import batch_invariance

GROUPS = 32


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [cos | sin] of (possibly fractional) timesteps (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def _in_place() -> bool:
    """Whether elementwise ops may overwrite their fresh inputs: only without autograd.

    The same results bit for bit, without a new buffer per op: at batch 8 a 64 px map is
    4 MB, and fresh buffers of that size cost page faults (measured up to -11% per upsampler
    call at 8 rows; docs/benchmarks.md, issue 11).
    """
    return not torch.is_grad_enabled()


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 (stable under fp16/bf16), with an optional fused SiLU."""

    def __init__(self, channels: int, silu: bool = False) -> None:
        super().__init__(GROUPS, channels)
        self.silu = silu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        y = batch_invariance.group_norm(x.float(), self.num_groups, weight, bias, self.eps)
        if self.silu:
            y = F.silu(y, inplace=_in_place())
        return y.to(x.dtype)


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32, returned in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        y = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return y.to(x.dtype)


def upsample_2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling (B, C, H, W) -> (B, C, 2H, 2W), interpolate's bytes.

    On contiguous maps 16 px and wider, repeating each pixel with expand + reshape is one
    plain copy, measured 2.8-2.9x faster than interpolate's nearest kernel at (2 and 16, 64,
    16, 16); channels-last and narrower maps keep interpolate, which was faster there.
    """
    b, c, h, w = x.shape
    if x.is_contiguous() and w >= 16:
        return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)
    return F.interpolate(x, scale_factor=2, mode="nearest")


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsampling, optionally followed by a 3x3 conv (`conv`)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)
        self.use_conv = use_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = upsample_2x(x)
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """2x downsampling: a strided 3x3 conv (`op`) or 2x2 average pooling."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        out = out_channels or channels
        if use_conv:
            self.op: nn.Module = nn.Conv2d(channels, out, 3, stride=2, padding=1)
        else:
            if out != channels:
                raise ValueError(f"pooling cannot change channels {channels} -> {out}")
            self.op = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block conditioned on an embedding (add, or scale-shift after the norm)."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        *,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        out = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            GroupNorm32(channels, silu=True), nn.Identity(), nn.Conv2d(channels, out, 3, padding=1)
        )
        self.updown = up or down
        self.resample: nn.Module = nn.Identity()
        if up:
            self.resample = Upsample(channels, False)
        elif down:
            self.resample = Downsample(channels, False)
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out if use_scale_shift_norm else out)
        )
        out_conv = nn.Conv2d(out, out, 3, padding=1)
        nn.init.zeros_(out_conv.weight)
        nn.init.zeros_(out_conv.bias)  # type: ignore[arg-type]  # bias=True above
        self.out_layers = nn.Sequential(
            GroupNorm32(out, silu=not use_scale_shift_norm),
            nn.SiLU() if use_scale_shift_norm else nn.Identity(),
            nn.Dropout(p=dropout),
            out_conv,
        )
        self.skip_connection: nn.Module = (
            nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W), emb (B, E) -> (B, out, H', W')."""
        if self.updown:
            h = self.in_layers[2](self.resample(self.in_layers[0](x)))
            x = self.resample(x)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]  # (B, E', 1, 1)
        if not _in_place():
            return self._forward_out(x, h, emb_out)
        # h and every intermediate below are fresh tensors: update them in place.
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h).mul_(1 + scale).add_(shift)
            h = self.out_layers[3](self.out_layers[2](F.silu(h, inplace=True)))
        else:
            h = self.out_layers(h.add_(emb_out))
        return h.add_(self.skip_connection(x))  # == skip + h, bit for bit

    def _forward_out(self, x: torch.Tensor, h: torch.Tensor, emb_out: torch.Tensor) -> torch.Tensor:
        """The block after in_layers, out of place (autograd)."""
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[3](self.out_layers[2](F.silu(h)))
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


@dataclass
class AttentionContext:
    """Context tokens shared by every attention block of one UNet call.

    tokens (B, W, S) are projected by each block's `encoder_kv` once and cached in `kv`, so
    a sampler that reuses the context across steps never recomputes them. mask (B, S) bool,
    True where a token may be attended to.
    """

    tokens: torch.Tensor
    mask: torch.Tensor | None
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    _masks: dict[int, torch.Tensor] = field(default_factory=dict)

    def key_mask(self, pixels: int) -> torch.Tensor | None:
        """(B, 1, 1, S + pixels) bool for context keys followed by `pixels` self keys."""
        if self.mask is None:
            return None
        if pixels not in self._masks:
            padded = F.pad(self.mask, (0, pixels), value=True)
            self._masks[pixels] = padded[:, None, None, :]
        return self._masks[pixels]


class AttentionBlock(nn.Module):
    """Spatial self-attention with optional context keys/values placed before the pixels."""

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        encoder_channels: int | None = None,
    ) -> None:
        super().__init__()
        if num_head_channels != -1:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} not divisible by {num_head_channels}")
            num_heads = channels // num_head_channels
        self.num_heads = num_heads
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        if encoder_channels is not None:
            self.encoder_kv = nn.Conv1d(encoder_channels, channels * 2, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)  # type: ignore[arg-type]  # Conv1d has a bias here

    @property
    def has_context(self) -> bool:
        """Whether this block attends to context tokens (it has `encoder_kv`)."""
        return hasattr(self, "encoder_kv")

    def context_kv(self, ctx: AttentionContext) -> tuple[torch.Tensor, torch.Tensor]:
        """This block's context keys and values (B, H, S, ch) each, cached in `ctx.kv`."""
        cached = ctx.kv.get(id(self))
        if cached is None:
            b = ctx.tokens.shape[0]
            ekv = self.encoder_kv(ctx.tokens).view(b, self.num_heads, -1, ctx.tokens.shape[2])
            ek, ev = ekv.transpose(2, 3).chunk(2, dim=3)  # (B, H, S, ch) each
            cached = ctx.kv[id(self)] = (ek, ev)
        return cached

    def forward(self, x: torch.Tensor, ctx: AttentionContext | None = None) -> torch.Tensor:
        """x (B, C, H, W), context tokens (B, W_enc, S) -> (B, C, H, W)."""
        b, c, *spatial = x.shape
        qkv = self.qkv(self.norm(x).view(b, c, -1))  # (B, 3C, T); per head [q | k | v]
        qkv = qkv.view(b, self.num_heads, 3 * c // self.num_heads, -1).transpose(2, 3)
        # Contiguous q, k, v let CPU SDPA take its fused (flash) kernel, not the math path.
        q, k, v = (part.contiguous() for part in qkv.chunk(3, dim=3))  # (B, H, T, ch)
        mask = None
        if ctx is not None and self.has_context:
            ek, ev = self.context_kv(ctx)
            k, v = torch.cat([ek, k], dim=2), torch.cat([ev, v], dim=2)
            mask = ctx.key_mask(q.shape[2])
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, T, ch)
        h = h.transpose(2, 3).reshape(b, c, -1)
        return x + self.proj_out(h).view(b, c, *spatial)


class TimestepEmbedSequential(nn.Sequential):
    """A sequence of layers; res blocks get the embedding, attention blocks the context."""

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, emb: torch.Tensor, ctx: AttentionContext | None = None
    ) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, AttentionBlock):
                x = layer(x, ctx)
            else:
                x = layer(x)
        return x
