"""Network and diffusion configs of each stage: dataclasses saved as JSON beside the weights.

Karlo v1 alpha presets and the Karlo YAML reader live in worker/unclip/karlo_configs.py.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

Schedule = Literal["cosine", "linear"]
Prediction = Literal["eps", "x0", "v"]
Variance = Literal["fixed_small", "fixed_large", "learned_range"]

SCHEDULES: tuple[str, ...] = get_args(Schedule)
PREDICTIONS: tuple[str, ...] = get_args(Prediction)
VARIANCES: tuple[str, ...] = get_args(Variance)

_C = TypeVar("_C", bound="_ConfigBase")


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _positive(owner: str, **values: int | float) -> None:
    for name, value in values.items():
        _require(value > 0, f"{owner}.{name} must be > 0, got {value!r}")


def _one_of(owner: str, name: str, value: object, allowed: tuple[Any, ...]) -> None:
    _require(value in allowed, f"{owner}.{name} must be one of {list(allowed)}, got {value!r}")


class _ConfigBase:
    """to_dict()/from_dict() shared by every config dataclass (JSON-friendly, strict keys)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, _ConfigBase):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[_C], data: Mapping[str, Any]) -> _C:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__} needs a mapping, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        _require(
            not unknown,
            f"{cls.__name__}: unknown keys {unknown}; allowed keys: {sorted(fields)}",
        )
        hints = typing.get_type_hints(cls)
        kwargs = {name: _convert(hints[name], value) for name, value in data.items()}
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a required key is missing
            raise ConfigError(f"{cls.__name__}: {exc}; allowed keys: {sorted(fields)}") from exc


def _convert(hint: Any, value: Any) -> Any:
    """Turn JSON values back into the field's type: nested configs and tuples."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        return value if value is None or len(options) != 1 else _convert(options[0], value)
    if isinstance(hint, type) and issubclass(hint, _ConfigBase) and isinstance(value, Mapping):
        return hint.from_dict(value)
    if origin is tuple and isinstance(value, list | tuple):
        return tuple(value)
    return value


@dataclass(frozen=True)
class DiffusionConfig(_ConfigBase):
    """How a stage was trained to denoise: schedule, length, target and variance."""

    schedule: Schedule = "cosine"
    timesteps: int = 1000
    prediction: Prediction = "eps"
    variance: Variance = "fixed_small"
    clamp_x0: float | None = 1.0  # clamp predicted x0 to [-c, c]; None: no clamp

    def __post_init__(self) -> None:
        _one_of("diffusion", "schedule", self.schedule, SCHEDULES)
        _one_of("diffusion", "prediction", self.prediction, PREDICTIONS)
        _one_of("diffusion", "variance", self.variance, VARIANCES)
        _positive("diffusion", timesteps=self.timesteps)
        if self.clamp_x0 is not None:
            _positive("diffusion", clamp_x0=self.clamp_x0)

    @property
    def learn_sigma(self) -> bool:
        return self.variance == "learned_range"


@dataclass(frozen=True)
class ClipConfig(_ConfigBase):
    """An open_clip model: architecture name (or a custom JSON registered under it) and sizes."""

    name: str
    embed_dim: int
    text_width: int
    context_length: int = 77
    image_size: int = 224
    open_clip_config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _require(bool(self.name), f"clip.name must be a non-empty string, got {self.name!r}")
        _positive(
            "clip",
            embed_dim=self.embed_dim,
            text_width=self.text_width,
            context_length=self.context_length,
            image_size=self.image_size,
        )
        cfg = self.open_clip_config
        _require(
            cfg is None or isinstance(cfg, dict),
            f"clip.open_clip_config must be a dict or None, got {type(cfg).__name__}",
        )
        if cfg is not None and "embed_dim" in cfg:
            _require(
                cfg["embed_dim"] == self.embed_dim,
                f"clip.embed_dim {self.embed_dim} differs from open_clip_config.embed_dim "
                f"{cfg['embed_dim']}",
            )


@dataclass(frozen=True)
class PriorConfig(_ConfigBase):
    """Causal transformer prior over [text tokens, text emb, time emb, x_t, query]."""

    clip_dim: int = 768
    text_width: int = 768  # width of CLIP's token sequence (Karlo: equal to clip_dim)
    text_ctx: int = 77
    width: int = 2048
    layers: int = 20
    heads: int = 32
    final_ln: bool = True
    text_drop: float = 0.2  # training only: probability of dropping the caption
    diffusion: DiffusionConfig = field(
        default_factory=lambda: DiffusionConfig(prediction="x0", clamp_x0=10.0)
    )

    def __post_init__(self) -> None:
        _positive(
            "prior",
            clip_dim=self.clip_dim,
            text_width=self.text_width,
            text_ctx=self.text_ctx,
            width=self.width,
            layers=self.layers,
            heads=self.heads,
        )
        _require(
            self.width % self.heads == 0,
            f"prior.width {self.width} must be divisible by prior.heads {self.heads}",
        )
        _require(
            0.0 <= self.text_drop < 1.0,
            f"prior.text_drop must be in [0, 1), got {self.text_drop!r}",
        )
        _require(
            self.diffusion.variance != "learned_range",
            "prior.diffusion.variance must be fixed_small or fixed_large (the prior outputs "
            "only the embedding), got 'learned_range'",
        )


def _check_unet(
    owner: str, cfg: DecoderConfig | UpsamplerConfig, groups: int = 32, trunk_size: int = 0
) -> None:
    """Checks shared by the two UNets: channel counts, levels and the trunk's image size
    (trunk_size when given, else image_size)."""
    _positive(
        owner,
        image_size=cfg.image_size,
        model_channels=cfg.model_channels,
        num_res_blocks=cfg.num_res_blocks,
    )
    _require(len(cfg.channel_mult) > 0, f"{owner}.channel_mult must not be empty")
    for mult in cfg.channel_mult:
        ch = int(mult * cfg.model_channels)
        _require(
            ch > 0 and ch % groups == 0,
            f"{owner}: model_channels * channel_mult = {ch} must be a positive multiple of "
            f"{groups} (GroupNorm groups); channel_mult={list(cfg.channel_mult)}",
        )
    factor = 2 ** (len(cfg.channel_mult) - 1)
    size = trunk_size or cfg.image_size
    _require(
        size % factor == 0,
        f"{owner}: the UNet's image size {size} must be divisible by {factor} "
        f"({len(cfg.channel_mult)} levels)",
    )
    _require(0.0 <= cfg.dropout < 1.0, f"{owner}.dropout must be in [0, 1), got {cfg.dropout!r}")


@dataclass(frozen=True)
class DecoderConfig(_ConfigBase):
    """GLIDE-style text+image-embedding UNet (Karlo PLMImUNet layout)."""

    image_size: int = 64
    in_channels: int = 7  # 7: [x_t, image * keep, keep] (inpainting layout); 3: plain
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 3
    attention_resolutions: tuple[int, ...] = (32, 16, 8)  # in pixels, as Karlo's YAML
    num_heads: int = -1
    num_head_channels: int = 64
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    dropout: float = 0.1
    clip_dim: int = 768
    text_width: int = 768  # width of CLIP's token sequence (Karlo: equal to clip_dim)
    text_ctx: int = 77
    xf_width: int = 1536  # width of the context tokens fed to every attention block
    clip_emb_mult: int = 4  # context tokens made from the image embedding
    clip_emb_drop: float = 0.1  # training: image-embedding drop rate; > 0 creates cf_param
    text_drop: float = 0.3  # training only
    diffusion: DiffusionConfig = field(
        default_factory=lambda: DiffusionConfig(variance="learned_range")
    )

    def __post_init__(self) -> None:
        _one_of("decoder", "in_channels", self.in_channels, (3, 7))
        _check_unet("decoder", self)
        _positive(
            "decoder",
            clip_dim=self.clip_dim,
            text_width=self.text_width,
            text_ctx=self.text_ctx,
            xf_width=self.xf_width,
            clip_emb_mult=self.clip_emb_mult,
        )
        for res in self.attention_resolutions:
            self._check_attention_level(res)
        _require(
            0.0 <= self.clip_emb_drop < 1.0,
            f"decoder.clip_emb_drop must be in [0, 1), got {self.clip_emb_drop!r}",
        )
        _require(
            0.0 <= self.text_drop < 1.0,
            f"decoder.text_drop must be in [0, 1), got {self.text_drop!r}",
        )

    def _check_attention_level(self, res: int) -> None:
        """An attention resolution must be a UNet level whose width splits into heads."""
        levels = [self.image_size // 2**i for i in range(len(self.channel_mult))]
        _require(
            res in levels,
            f"decoder.attention_resolutions entry {res} is not a UNet level resolution; "
            f"allowed: {levels}",
        )
        ch = self.channel_mult[levels.index(res)] * self.model_channels
        if self.num_head_channels != -1:
            _require(
                self.num_head_channels > 0 and ch % self.num_head_channels == 0,
                f"decoder: attention width {ch} (at {res} px) must be divisible by "
                f"num_head_channels {self.num_head_channels}",
            )
        else:
            _require(
                self.num_heads > 0 and ch % self.num_heads == 0,
                f"decoder: with num_head_channels -1, num_heads ({self.num_heads}) must be > 0 "
                f"and divide the attention width {ch} (at {res} px)",
            )

    @property
    def out_channels(self) -> int:
        return 6 if self.diffusion.learn_sigma else 3

    @property
    def attention_ds(self) -> tuple[int, ...]:
        """Attention resolutions as downsampling factors, as the UNet builder counts them."""
        return tuple(self.image_size // res for res in self.attention_resolutions)

    @property
    def has_null_image_emb(self) -> bool:
        return self.clip_emb_drop > 0


@dataclass(frozen=True)
class UpsamplerConfig(_ConfigBase):
    """Attention-free super-resolution UNet(s) conditioned on the resized low-res image."""

    image_size: int = 256
    low_res_size: int = 64
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 3
    dropout: float = 0.0
    use_scale_shift_norm: bool = False
    resblock_updown: bool = True
    last_step_model: bool = True  # a separate network for the final step (Karlo improved SR)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    # Space-to-depth: the UNet runs on patch_size x patch_size pixel blocks folded into
    # channels (pixel unshuffle in, pixel shuffle out), at image_size / patch_size.
    patch_size: int = 1
    # x0 = the resized low-res image + the net's output: a residual on bicubic (needs x0
    # prediction); with the zero-initialised output conv the untrained net returns bicubic.
    residual: bool = False

    def __post_init__(self) -> None:
        _positive("upsampler", low_res_size=self.low_res_size, patch_size=self.patch_size)
        _require(
            not self.residual or (self.diffusion.prediction == "x0" and self.out_channels == 3),
            "upsampler.residual needs x0 prediction and fixed variance (3 output channels)",
        )
        _require(
            self.image_size % self.patch_size == 0,
            f"upsampler.image_size {self.image_size} must be divisible by patch_size "
            f"{self.patch_size}",
        )
        _check_unet("upsampler", self, trunk_size=self.image_size // self.patch_size)
        _require(
            self.low_res_size <= self.image_size,
            f"upsampler.low_res_size {self.low_res_size} must be <= image_size {self.image_size}",
        )

    @property
    def out_channels(self) -> int:
        return 6 if self.diffusion.learn_sigma else 3
