"""Karlo v1 alpha sizes: named presets and a reader for Karlo's YAML model configs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from worker.unclip.configs import (
    ClipConfig,
    ConfigError,
    DecoderConfig,
    DiffusionConfig,
    PriorConfig,
    UpsamplerConfig,
)

StageConfig = PriorConfig | DecoderConfig | UpsamplerConfig

# Karlo's schedule names -> ours ("squaredcos_cap_v2" is the Nichol & Dhariwal cosine).
KARLO_SCHEDULES = {"squaredcos_cap_v2": "cosine", "linear": "linear"}
# Default channel multipliers Karlo picks when the YAML leaves channel_mult empty.
_KARLO_DEFAULT_MULT = {256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}


def karlo_clip_config() -> ClipConfig:
    """OpenAI CLIP ViT-L/14 as open_clip builds it for OpenAI weights (QuickGELU)."""
    return ClipConfig(
        name="ViT-L-14-quickgelu", embed_dim=768, text_width=768, context_length=77, image_size=224
    )


def karlo_prior_config() -> PriorConfig:
    """configs/prior_1B_vit_l.yaml."""
    return PriorConfig(
        clip_dim=768,
        text_width=768,
        text_ctx=77,
        width=2048,
        layers=20,
        heads=32,
        final_ln=True,
        text_drop=0.2,
        diffusion=DiffusionConfig("cosine", 1000, "x0", "fixed_small", clamp_x0=10.0),
    )


def karlo_decoder_config(in_channels: int = 7) -> DecoderConfig:
    """configs/decoder_900M_vit_l.yaml (Karlo's own decoder has 3 input channels)."""
    return DecoderConfig(
        image_size=64,
        in_channels=in_channels,
        model_channels=320,
        channel_mult=(1, 2, 3, 4),
        num_res_blocks=3,
        attention_resolutions=(32, 16, 8),
        num_heads=-1,
        num_head_channels=64,
        num_heads_upsample=-1,
        use_scale_shift_norm=True,
        resblock_updown=True,
        dropout=0.1,
        clip_dim=768,
        text_width=768,
        text_ctx=77,
        xf_width=1536,
        clip_emb_mult=4,
        clip_emb_drop=0.1,
        text_drop=0.3,
        diffusion=DiffusionConfig("cosine", 1000, "eps", "learned_range", clamp_x0=1.0),
    )


def karlo_upsampler_config() -> UpsamplerConfig:
    """configs/improved_sr_64_256_1.4B.yaml: two attention-free UNets, 64 -> 256 px."""
    return UpsamplerConfig(
        image_size=256,
        low_res_size=64,
        model_channels=320,
        channel_mult=(1, 2, 3, 4),
        num_res_blocks=3,
        dropout=0.0,
        use_scale_shift_norm=False,
        resblock_updown=True,
        last_step_model=True,
        diffusion=DiffusionConfig("cosine", 1000, "eps", "fixed_small", clamp_x0=1.0),
    )


# Preset name (Karlo's YAML file stem) -> config factory.
KARLO_PRESETS: dict[str, Callable[[], StageConfig]] = {
    "prior_1B_vit_l": karlo_prior_config,
    "decoder_900M_vit_l": karlo_decoder_config,
    "improved_sr_64_256_1.4B": karlo_upsampler_config,
}


def karlo_preset(name: str) -> StageConfig:
    """The config of a Karlo YAML by its file stem."""
    if name not in KARLO_PRESETS:
        raise ConfigError(f"unknown Karlo preset {name!r}; choose one of {sorted(KARLO_PRESETS)}")
    return KARLO_PRESETS[name]()


def karlo_diffusion(section: Mapping[str, Any], *, clamp_x0: float | None) -> DiffusionConfig:
    """Karlo's `diffusion:` YAML section -> DiffusionConfig."""
    schedule = section.get("noise_schedule", "squaredcos_cap_v2")
    if schedule not in KARLO_SCHEDULES:
        raise ConfigError(
            f"Karlo noise_schedule {schedule!r} is not supported; "
            f"allowed: {sorted(KARLO_SCHEDULES)}"
        )
    if section.get("learn_sigma", False):
        variance = "learned_range"
    else:
        variance = "fixed_small" if section.get("sigma_small", False) else "fixed_large"
    return DiffusionConfig(
        schedule=KARLO_SCHEDULES[schedule],  # type: ignore[arg-type]
        timesteps=int(section.get("steps", 1000)),
        prediction="x0" if section.get("predict_xstart", False) else "eps",
        variance=variance,  # type: ignore[arg-type]
        clamp_x0=clamp_x0,
    )


def _ints(text: str | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(text, str):
        return tuple(int(part) for part in text.split(",") if part.strip())
    return tuple(int(v) for v in text)


def _prior_from_yaml(hp: Mapping[str, Any], diffusion: Mapping[str, Any]) -> PriorConfig:
    return PriorConfig(
        clip_dim=int(hp["clip_dim"]),
        text_width=int(hp["clip_dim"]),
        text_ctx=int(hp["text_ctx"]),
        width=int(hp["xf_width"]),
        layers=int(hp["xf_layers"]),
        heads=int(hp["xf_heads"]),
        final_ln=bool(hp["xf_final_ln"]),
        text_drop=float(hp.get("text_drop", 0.0)),
        diffusion=karlo_diffusion(diffusion, clamp_x0=10.0),
    )


def _decoder_from_yaml(
    hp: Mapping[str, Any], diffusion: Mapping[str, Any], in_channels: int
) -> DecoderConfig:
    size = int(hp["image_size"])
    mult = _ints(hp.get("channel_mult", "")) or _KARLO_DEFAULT_MULT.get(size)
    if mult is None:
        raise ConfigError(
            f"Karlo decoder image_size {size} has no default channel_mult; "
            f"allowed: {sorted(_KARLO_DEFAULT_MULT)} or give channel_mult"
        )
    dec_diffusion = dict(diffusion)
    dec_diffusion["learn_sigma"] = bool(hp.get("learn_sigma", diffusion.get("learn_sigma")))
    return DecoderConfig(
        image_size=size,
        in_channels=in_channels,
        model_channels=int(hp["num_channels"]),
        channel_mult=mult,
        num_res_blocks=int(hp["num_res_blocks"]),
        attention_resolutions=_ints(hp["attention_resolutions"]),
        num_heads=int(hp.get("num_heads", -1)),
        num_head_channels=int(hp.get("num_head_channels", -1)),
        num_heads_upsample=int(hp.get("num_heads_upsample", -1)),
        use_scale_shift_norm=bool(hp["use_scale_shift_norm"]),
        resblock_updown=bool(hp["resblock_updown"]),
        dropout=float(hp.get("dropout", 0.0)),
        clip_dim=int(hp["clip_dim"]),
        text_width=int(hp["clip_dim"]),
        text_ctx=int(hp["text_ctx"]),
        xf_width=int(hp["xf_width"]),
        clip_emb_mult=int(hp["clip_emb_mult"]),
        clip_emb_drop=float(hp.get("clip_emb_drop", 0)),
        text_drop=float(hp.get("text_drop", 0.0)),
        diffusion=karlo_diffusion(dec_diffusion, clamp_x0=1.0),
    )


def _upsampler_from_yaml(
    hp: Mapping[str, Any], diffusion: Mapping[str, Any], image_size: int, low_res_size: int
) -> UpsamplerConfig:
    return UpsamplerConfig(
        image_size=image_size,
        low_res_size=low_res_size,
        model_channels=int(hp["channels"]),
        channel_mult=_ints(hp["channels_multiple"]),
        num_res_blocks=int(hp["depth"]),
        dropout=float(hp.get("dropout", 0.0)),
        use_scale_shift_norm=False,
        resblock_updown=True,
        last_step_model=True,
        diffusion=karlo_diffusion(diffusion, clamp_x0=1.0),
    )


def config_from_karlo_yaml(
    data: Mapping[str, Any],
    *,
    decoder_in_channels: int = 7,
    upsampler_sizes: tuple[int, int] = (256, 64),
) -> StageConfig:
    """A parsed Karlo YAML (model.type prior | t2i-decoder | improved_sr_64_256) -> our config."""
    try:
        model, diffusion = data["model"], data.get("diffusion", {})
        kind, hp = model["type"], model["hparams"]
        if kind == "prior":
            return _prior_from_yaml(hp, diffusion)
        if kind == "t2i-decoder":
            return _decoder_from_yaml(hp, diffusion, decoder_in_channels)
        if kind == "improved_sr_64_256":
            return _upsampler_from_yaml(hp, diffusion, *upsampler_sizes)
    except KeyError as exc:
        raise ConfigError(f"Karlo YAML is missing the key {exc.args[0]!r}") from exc
    raise ConfigError(
        f"Karlo model.type {kind!r} is not supported; allowed: "
        "['prior', 't2i-decoder', 'improved_sr_64_256']"
    )


def read_karlo_yaml(path: str | Path, **kwargs: Any) -> StageConfig:
    """Read one of Karlo's configs/*.yaml files into our config (see config_from_karlo_yaml)."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a YAML mapping, got {type(data).__name__}")
    return config_from_karlo_yaml(data, **kwargs)
