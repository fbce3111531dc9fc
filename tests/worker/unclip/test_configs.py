"""Stage configs: JSON round trips and errors that name the bad value and what is allowed."""

from __future__ import annotations

import json

import pytest

from worker.unclip.configs import (
    ClipConfig,
    ConfigError,
    DecoderConfig,
    DiffusionConfig,
    PriorConfig,
    UpsamplerConfig,
)

CONFIGS = [
    ClipConfig(name="ViT-B-32", embed_dim=512, text_width=512, open_clip_config=None),
    PriorConfig(clip_dim=16, text_width=24, text_ctx=6, width=32, layers=2, heads=4),
    DecoderConfig(model_channels=64, channel_mult=(1, 2), attention_resolutions=(32,)),
    UpsamplerConfig(image_size=64, low_res_size=32, channel_mult=(1, 1), last_step_model=False),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: type(c).__name__)
def test_json_round_trip_is_exact(cfg: object) -> None:
    data = json.loads(json.dumps(cfg.to_dict()))  # type: ignore[attr-defined]
    assert type(cfg).from_dict(data) == cfg  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: DiffusionConfig(schedule="sigmoid"), r"schedule must be one of \['cosine'"),
        (lambda: DiffusionConfig(variance="big"), "'learned_range'.*got 'big'"),
        (lambda: PriorConfig(width=100, heads=32), "width 100 must be divisible by prior.heads"),
        (lambda: DecoderConfig(in_channels=4), r"in_channels must be one of \[3, 7\], got 4"),
        (lambda: DecoderConfig(model_channels=40), "multiple of 32"),
        (lambda: DecoderConfig(attention_resolutions=(12,)), r"allowed: \[64, 32, 16, 8\]"),
        (lambda: UpsamplerConfig(low_res_size=512), "low_res_size 512 must be <= image_size"),
        (lambda: PriorConfig.from_dict({"widht": 3}), r"unknown keys \['widht'\]"),
        (lambda: ClipConfig.from_dict({"name": "x"}), "allowed keys"),
        (
            lambda: PriorConfig(diffusion=DiffusionConfig(variance="learned_range")),
            "prior.diffusion.variance",
        ),
    ],
)
def test_bad_values_are_named(build: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()  # type: ignore[operator]


def test_derived_sizes() -> None:
    cfg = DecoderConfig()
    assert cfg.attention_ds == (2, 4, 8) and cfg.out_channels == 6 and cfg.has_null_image_emb
    fixed = DecoderConfig(diffusion=DiffusionConfig(variance="fixed_large"), clip_emb_drop=0.0)
    assert fixed.out_channels == 3 and not fixed.has_null_image_emb
