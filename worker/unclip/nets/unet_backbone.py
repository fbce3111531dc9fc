"""The GLIDE/guided-diffusion UNet trunk shared by the decoder and the upsampler."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from worker.unclip.nets.unet import (
    AttentionBlock,
    AttentionContext,
    Downsample,
    GroupNorm32,
    ResBlock,
    TimestepEmbedSequential,
    Upsample,
    timestep_embedding,
)


@dataclass(frozen=True)
class UNetLayout:
    """Sizes of a UNet trunk (Karlo's UNetModel arguments)."""

    in_channels: int
    model_channels: int
    out_channels: int
    num_res_blocks: int
    channel_mult: tuple[int, ...]
    attention_ds: tuple[int, ...] = ()  # downsampling factors with attention
    dropout: float = 0.0
    num_heads: int = 1
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = False
    resblock_updown: bool = False
    conv_resample: bool = True
    middle_attention: bool = True
    encoder_channels: int | None = None


class UNetBackbone(nn.Module):
    """time_embed, input_blocks, middle_block, output_blocks and out, as Karlo names them."""

    def __init__(self, layout: UNetLayout) -> None:
        super().__init__()
        self.layout = layout
        self.model_channels = layout.model_channels
        emb_dim = layout.model_channels * 4
        self.time_embed = nn.Sequential(
            nn.Linear(layout.model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        ch = int(layout.channel_mult[0] * layout.model_channels)
        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(layout.in_channels, ch, 3, padding=1))]
        )
        skip_chans = self._build_input(ch, emb_dim)
        ch = skip_chans[-1]
        self.middle_block = TimestepEmbedSequential(
            self._res(ch, emb_dim, ch),
            *([self._attention(ch, layout.num_heads)] if layout.middle_attention else []),
            self._res(ch, emb_dim, ch),
        )
        self.output_blocks = nn.ModuleList()
        ch = self._build_output(ch, emb_dim, skip_chans)
        out_conv = nn.Conv2d(ch, layout.out_channels, 3, padding=1)
        nn.init.zeros_(out_conv.weight)
        nn.init.zeros_(out_conv.bias)  # type: ignore[arg-type]  # bias=True above
        self.out = nn.Sequential(
            GroupNorm32(ch, silu=True),
            nn.Identity(),
            out_conv,
        )

    def _res(self, ch: int, emb_dim: int, out: int, **updown: bool) -> ResBlock:
        lay = self.layout
        return ResBlock(
            ch, emb_dim, lay.dropout, out, use_scale_shift_norm=lay.use_scale_shift_norm, **updown
        )

    def _attention(self, ch: int, heads: int) -> AttentionBlock:
        lay = self.layout
        return AttentionBlock(ch, heads, lay.num_head_channels, lay.encoder_channels)

    def _build_input(self, ch: int, emb_dim: int) -> list[int]:
        lay, ds, chans = self.layout, 1, [ch]
        for level, mult in enumerate(lay.channel_mult):
            for _ in range(lay.num_res_blocks):
                out = int(mult * lay.model_channels)
                layers: list[nn.Module] = [self._res(ch, emb_dim, out)]
                ch = out
                if ds in lay.attention_ds:
                    layers.append(self._attention(ch, lay.num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(lay.channel_mult) - 1:
                down = (
                    self._res(ch, emb_dim, ch, down=True)
                    if lay.resblock_updown
                    else Downsample(ch, lay.conv_resample, ch)
                )
                self.input_blocks.append(TimestepEmbedSequential(down))
                chans.append(ch)
                ds *= 2
        return chans

    def _build_output(self, ch: int, emb_dim: int, skip_chans: list[int]) -> int:
        lay = self.layout
        heads_up = lay.num_heads if lay.num_heads_upsample == -1 else lay.num_heads_upsample
        ds = 2 ** (len(lay.channel_mult) - 1)
        for level, mult in reversed(list(enumerate(lay.channel_mult))):
            for i in range(lay.num_res_blocks + 1):
                out = int(lay.model_channels * mult)
                layers: list[nn.Module] = [self._res(ch + skip_chans.pop(), emb_dim, out)]
                ch = out
                if ds in lay.attention_ds:
                    layers.append(self._attention(ch, heads_up))
                if level and i == lay.num_res_blocks:
                    layers.append(
                        self._res(ch, emb_dim, ch, up=True)
                        if lay.resblock_updown
                        else Upsample(ch, lay.conv_resample, ch)
                    )
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        return ch

    @property
    def dtype(self) -> torch.dtype:
        first = self.time_embed[0]
        assert isinstance(first, nn.Linear)
        return first.weight.dtype

    def embed_time(self, t: torch.Tensor) -> torch.Tensor:
        """Timesteps (B,) -> time embedding (B, 4 * model_channels) in the weights' dtype."""
        return self.time_embed(timestep_embedding(t, self.model_channels).to(self.dtype))

    @property
    def stem_conv(self) -> nn.Conv2d:
        """The first convolution (input_blocks.0.0), which sees the raw input channels."""
        conv = self.input_blocks[0][0]  # type: ignore[index]
        assert isinstance(conv, nn.Conv2d)
        return conv

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The first conv (input_blocks.0): x (B, in_channels, H, W) -> (B, C0, H, W)."""
        conv = self.stem_conv
        if x.shape[1] != conv.in_channels:
            raise ValueError(f"input has {x.shape[1]} channels; this UNet takes {conv.in_channels}")
        return conv(x)

    def run_trunk(
        self, h: torch.Tensor, emb: torch.Tensor, ctx: AttentionContext | None = None
    ) -> torch.Tensor:
        """After the stem through `out`: h (B, C0, H, W), emb (B, E) -> (B, out, H, W)."""
        skips = [h]
        for block in self.input_blocks[1:]:
            h = block(h, emb, ctx)
            skips.append(h)
        h = self.middle_block(h, emb, ctx)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, ctx)
        return self.out(h)
