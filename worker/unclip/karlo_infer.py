"""Network configs read off Karlo-layout state dicts, for checkpoints without their YAML."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from worker.unclip.configs import (
    ConfigError,
    DecoderConfig,
    DiffusionConfig,
    PriorConfig,
    UpsamplerConfig,
)

# What the shapes cannot tell: Karlo's values are assumed.
HEAD_CHANNELS = 64  # attention head width of Karlo's prior and decoder
DECODER_IMAGE_SIZE = 64
UPSAMPLER_SIZES = (256, 64)  # (image_size, low_res_size)

State = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class UNetShape:
    """The structure of a UNet trunk as its parameter names and shapes reveal it."""

    in_channels: int
    out_channels: int
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_levels: tuple[int, ...]
    middle_attention: bool
    use_scale_shift_norm: bool
    resblock_updown: bool


def _count(state: State, pattern: str) -> int:
    """1 + the largest index matched by `pattern` (a regex with one group), 0 if none."""
    regex = re.compile(pattern)
    found = [int(m.group(1)) for key in state if (m := regex.match(key))]
    return max(found) + 1 if found else 0


def _shape(state: State, key: str) -> torch.Size:
    if key not in state:
        raise ConfigError(f"state dict has no {key!r}: not a Karlo-layout network")
    return state[key].shape


def _has_up_layer(state: State, i: int) -> bool:
    return any(
        f"output_blocks.{i}.{j}.{leaf}" in state
        for j in (1, 2)
        for leaf in ("in_layers.0.weight", "conv.weight")
    )


def infer_unet_shape(state: State) -> UNetShape:
    """Levels, widths, res blocks and attention of a Karlo UNet state dict (no prefix)."""
    model_channels = _shape(state, "time_embed.0.weight")[1]
    n_out = _count(state, r"output_blocks\.(\d+)\.")
    ups = [i for i in range(n_out) if _has_up_layer(state, i)]
    num_res_blocks = ups[0] if ups else n_out - 1
    levels = n_out // (num_res_blocks + 1)
    if n_out == 0 or levels * (num_res_blocks + 1) != n_out or len(ups) != levels - 1:
        raise ConfigError(f"cannot read a UNet layout from {n_out} output blocks")
    mult, attention = [], []
    for level in range(levels):
        i = (levels - 1 - level) * (num_res_blocks + 1)  # first output block of the level
        ch = _shape(state, f"output_blocks.{i}.0.out_layers.3.weight")[0]
        if ch % model_channels:
            raise ConfigError(f"level {level} width {ch} is not a multiple of {model_channels}")
        mult.append(ch // model_channels)
        if f"output_blocks.{i}.1.qkv.weight" in state:
            attention.append(level)
    emb_out = _shape(state, "input_blocks.1.0.emb_layers.1.weight")[0]
    first_out = _shape(state, "input_blocks.1.0.out_layers.3.weight")[0]
    down = f"input_blocks.{num_res_blocks + 1}.0"
    return UNetShape(
        in_channels=_shape(state, "input_blocks.0.0.weight")[1],
        out_channels=_shape(state, "out.2.weight")[0],
        model_channels=model_channels,
        channel_mult=tuple(mult),
        num_res_blocks=num_res_blocks,
        attention_levels=tuple(attention),
        middle_attention="middle_block.1.qkv.weight" in state,
        use_scale_shift_norm=emb_out == 2 * first_out,
        resblock_updown=levels > 1 and f"{down}.in_layers.0.weight" in state,
    )


def _variance(out_channels: int, fixed: str) -> str:
    if out_channels not in (3, 6):
        raise ConfigError(f"UNet output has {out_channels} channels; expected 3 or 6")
    return "learned_range" if out_channels == 6 else fixed


def infer_prior_config(state: State) -> PriorConfig:
    """A PriorConfig from a prior state dict (no "model." prefix); head width 64 assumed."""
    width, clip_dim = _shape(state, "clip_img_proj.weight")
    if width % HEAD_CHANNELS:
        raise ConfigError(
            f"prior width {width} is not a multiple of {HEAD_CHANNELS}: the head count cannot "
            "be inferred; give Karlo's YAML configs (--config-dir)"
        )
    return PriorConfig(
        clip_dim=clip_dim,
        text_width=_shape(state, "text_enc_proj.weight")[1],
        text_ctx=_shape(state, "positional_embedding")[1] - 4,
        width=width,
        layers=_count(state, r"transformer\.resblocks\.(\d+)\."),
        heads=width // HEAD_CHANNELS,
        final_ln="final_ln.weight" in state,
        diffusion=DiffusionConfig("cosine", 1000, "x0", "fixed_small", clamp_x0=10.0),
    )


def infer_decoder_config(
    state: State, *, image_size: int = DECODER_IMAGE_SIZE, in_channels: int | None = None
) -> DecoderConfig:
    """A DecoderConfig from a decoder state dict (no prefix); image size and heads assumed."""
    unet = infer_unet_shape(state)
    widths = [unet.model_channels * unet.channel_mult[level] for level in unet.attention_levels]
    head_channels = math.gcd(HEAD_CHANNELS, *widths) if widths else HEAD_CHANNELS
    xf_width, text_width = _shape(state, "text_seq_proj.0.weight")
    clip_dim = _shape(state, "clip_emb.weight")[1]
    variance = _variance(unet.out_channels, "fixed_large")
    return DecoderConfig(
        image_size=image_size,
        in_channels=in_channels or unet.in_channels,
        model_channels=unet.model_channels,
        channel_mult=unet.channel_mult,
        num_res_blocks=unet.num_res_blocks,
        attention_resolutions=tuple(image_size // 2**level for level in unet.attention_levels),
        num_heads=-1,
        num_head_channels=head_channels,
        use_scale_shift_norm=unet.use_scale_shift_norm,
        resblock_updown=unet.resblock_updown,
        clip_dim=clip_dim,
        text_width=text_width,
        xf_width=xf_width,
        clip_emb_mult=_shape(state, "clip_tok_proj.weight")[0] // xf_width,
        clip_emb_drop=0.1 if "cf_param" in state else 0.0,
        diffusion=DiffusionConfig("cosine", 1000, "eps", variance, clamp_x0=1.0),  # type: ignore[arg-type]
    )


def infer_upsampler_config(
    state: State, *, sizes: tuple[int, int] = UPSAMPLER_SIZES
) -> UpsamplerConfig:
    """An UpsamplerConfig from an upsampler pair state dict ("model_first_steps." keys)."""
    prefix = "model_first_steps."
    first = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not first:
        raise ConfigError("upsampler state dict has no 'model_first_steps.' keys")
    unet = infer_unet_shape(first)
    if unet.attention_levels or unet.middle_attention or unet.in_channels != 6:
        raise ConfigError(
            "upsampler must be attention-free with 6 input channels, got "
            f"{unet.in_channels} channels and attention at levels {unet.attention_levels}"
        )
    return UpsamplerConfig(
        image_size=sizes[0],
        low_res_size=sizes[1],
        model_channels=unet.model_channels,
        channel_mult=unet.channel_mult,
        num_res_blocks=unet.num_res_blocks,
        use_scale_shift_norm=unet.use_scale_shift_norm,
        resblock_updown=unet.resblock_updown,
        last_step_model=any(k.startswith("model_last_step.") for k in state),
        diffusion=DiffusionConfig(
            "cosine",
            1000,
            "eps",
            _variance(unet.out_channels, "fixed_small"),  # type: ignore[arg-type]
            clamp_x0=1.0,
        ),
    )
