"""DecoderNet: the unCLIP decoder UNet conditioned on CLIP image and text (Karlo PLMImUNet)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from worker.unclip.configs import DecoderConfig
from worker.unclip.nets.unet import AttentionContext, LayerNorm32
from worker.unclip.nets.unet_backbone import UNetBackbone, UNetLayout


@dataclass
class DecoderContext:
    """Everything of one decoder call that does not depend on x_t or t.

    Build it once per sampling run with `DecoderNet.encode_context` and pass it to
    `DecoderNet.denoise` at every step: the projections and each attention block's context
    keys/values are then computed once instead of once per step.
    """

    cond_emb: torch.Tensor  # (B, 4 * model_channels): clip_emb(image) + text_feat_proj(text)
    attention: AttentionContext  # tokens (B, xf_width, clip_emb_mult + L), mask (B, 4 + L)


def decoder_layout(cfg: DecoderConfig) -> UNetLayout:
    """The UNet trunk sizes of a decoder config."""
    return UNetLayout(
        in_channels=cfg.in_channels,
        model_channels=cfg.model_channels,
        out_channels=cfg.out_channels,
        num_res_blocks=cfg.num_res_blocks,
        channel_mult=cfg.channel_mult,
        attention_ds=cfg.attention_ds,
        dropout=cfg.dropout,
        num_heads=cfg.num_heads,
        num_head_channels=cfg.num_head_channels,
        num_heads_upsample=cfg.num_heads_upsample,
        use_scale_shift_norm=cfg.use_scale_shift_norm,
        resblock_updown=cfg.resblock_updown,
        middle_attention=True,
        encoder_channels=cfg.xf_width,
    )


class DecoderNet(UNetBackbone):
    """GLIDE-style UNet predicting eps (and the learned variance range) for 64 px images.

    forward(x (B, in_ch, H, W), t (B,) long, *, image_emb (B, D), text_emb (B, D),
    text_tokens (B, L, W_text), text_mask (B, L) bool, keep_image_emb (B,) bool | None)
    -> (B, out_ch, H, W) in x's dtype; out_ch is 6 (eps, variance interpolation) with
    learned-range variance, else 3. in_ch is 7 for the inpainting layout
    [x_t, image * keep, keep] (a 3-channel x is accepted too: nothing known) or 3.
    The image embedding is added to the time embedding (`clip_emb`) and projected into
    `clip_emb_mult` context tokens (`clip_tok_proj`) placed before the text tokens
    (`text_seq_proj`) in every attention block; `text_feat_proj` adds the pooled text
    embedding to the time embedding. Rows with keep_image_emb False use the learned null
    image embedding `cf_param` (classifier-free guidance). text_mask is True on real tokens.
    """

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__(decoder_layout(cfg))
        self.cfg = cfg
        emb_dim = cfg.model_channels * 4
        self.clip_emb = nn.Linear(cfg.clip_dim, emb_dim)
        self.text_seq_proj = nn.Sequential(
            nn.Linear(cfg.text_width, cfg.xf_width), LayerNorm32(cfg.xf_width)
        )
        self.text_feat_proj = nn.Linear(cfg.clip_dim, emb_dim)
        self.clip_tok_proj = nn.Linear(cfg.clip_dim, cfg.xf_width * cfg.clip_emb_mult)
        if cfg.has_null_image_emb:
            self.cf_param = nn.Parameter(torch.randn(cfg.clip_dim) * cfg.clip_dim**-0.5)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """First conv; a 3-channel x on a 7-channel net means "nothing known" (zeros)."""
        conv = self.stem_conv
        if x.shape[1] == 3 and conv.in_channels == 7:
            # The same result as zero-padding x, without convolving the zeros.
            return F.conv2d(x, conv.weight[:, :3], conv.bias, padding=1)
        return super().stem(x)

    def null_image_emb(self, batch: int) -> torch.Tensor:
        """The learned null image embedding `cf_param` repeated (batch, D)."""
        if not self.cfg.has_null_image_emb:
            raise ValueError("this decoder has no null image embedding (clip_emb_drop is 0)")
        return self.cf_param[None].expand(batch, -1)

    def encode_context(
        self,
        *,
        image_emb: torch.Tensor,
        text_emb: torch.Tensor,
        text_tokens: torch.Tensor,
        text_mask: torch.Tensor,
        keep_image_emb: torch.Tensor | None = None,
    ) -> DecoderContext:
        """The step-independent conditioning of a batch (see DecoderContext)."""
        dtype = self.dtype
        image_emb = image_emb.to(dtype)
        if keep_image_emb is not None:
            null = self.null_image_emb(image_emb.shape[0]).to(dtype)
            image_emb = torch.where(keep_image_emb.to(torch.bool)[:, None], image_emb, null)
        b = image_emb.shape[0]
        cond_emb = self.clip_emb(image_emb) + self.text_feat_proj(text_emb.to(dtype))  # (B, E)
        text_seq = self.text_seq_proj(text_tokens.to(dtype)).transpose(1, 2)  # (B, xf, L)
        image_tokens = self.clip_tok_proj(image_emb).reshape(b, -1, self.cfg.clip_emb_mult)
        tokens = torch.cat([image_tokens, text_seq], dim=2)  # (B, xf, mult + L)
        mask = F.pad(text_mask.to(torch.bool), (self.cfg.clip_emb_mult, 0), value=True)
        # No mask at all when nothing is padded: one host sync here, none per block.
        return DecoderContext(cond_emb, AttentionContext(tokens, None if mask.all() else mask))

    def denoise(self, x: torch.Tensor, t: torch.Tensor, ctx: DecoderContext) -> torch.Tensor:
        """One network call with a prepared context: x (B, in_ch, H, W), t (B,) -> output."""
        emb = self.embed_time(t) + ctx.cond_emb
        return self.run_trunk(self.stem(x.to(self.dtype)), emb, ctx.attention).to(x.dtype)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        *,
        image_emb: torch.Tensor,
        text_emb: torch.Tensor,
        text_tokens: torch.Tensor,
        text_mask: torch.Tensor,
        keep_image_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ctx = self.encode_context(
            image_emb=image_emb,
            text_emb=text_emb,
            text_tokens=text_tokens,
            text_mask=text_mask,
            keep_image_emb=keep_image_emb,
        )
        return self.denoise(x, t, ctx)


def pad_decoder_input_channels(
    state_dict: dict[str, torch.Tensor], in_channels: int = 7
) -> dict[str, torch.Tensor]:
    """A 3-channel decoder state dict -> the 7-channel layout, the new inputs zero-weighted.

    Outputs are unchanged for any [image * keep, keep] since their weights are zero.
    """
    key = "input_blocks.0.0.weight"
    if key not in state_dict:
        raise KeyError(f"decoder state dict has no {key!r} (strip the 'model.' prefix first)")
    weight = state_dict[key]
    if weight.shape[1] == in_channels:
        return dict(state_dict)
    if weight.shape[1] != 3 or in_channels != 7:
        raise ValueError(
            f"can pad a 3-channel decoder to 7 channels only; got {weight.shape[1]} -> "
            f"{in_channels}"
        )
    extra = weight.new_zeros(weight.shape[0], in_channels - 3, *weight.shape[2:])
    return {**state_dict, key: torch.cat([weight, extra], dim=1)}
