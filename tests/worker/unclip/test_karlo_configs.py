"""Karlo presets and the Karlo YAML reader."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from worker.unclip.configs import ConfigError
from worker.unclip.karlo_configs import (
    KARLO_PRESETS,
    config_from_karlo_yaml,
    karlo_decoder_config,
    karlo_preset,
    read_karlo_yaml,
)

# The keys and values of Karlo's configs/decoder_900M_vit_l.yaml (model and diffusion).
DECODER_YAML = {
    "model": {
        "type": "t2i-decoder",
        "diffusion_sampler": "uniform",
        "hparams": {
            "image_size": 64,
            "num_channels": 320,
            "num_res_blocks": 3,
            "channel_mult": "",
            "attention_resolutions": "32,16,8",
            "num_heads": -1,
            "num_head_channels": 64,
            "num_heads_upsample": -1,
            "use_scale_shift_norm": True,
            "dropout": 0.1,
            "clip_dim": 768,
            "clip_emb_mult": 4,
            "text_ctx": 77,
            "xf_width": 1536,
            "xf_layers": 0,
            "xf_heads": 0,
            "xf_final_ln": False,
            "resblock_updown": True,
            "learn_sigma": True,
            "text_drop": 0.3,
            "clip_emb_type": "image",
            "clip_emb_drop": 0.1,
            "use_plm": True,
        },
    },
    "diffusion": {
        "steps": 1000,
        "learn_sigma": True,
        "sigma_small": False,
        "noise_schedule": "squaredcos_cap_v2",
        "use_kl": False,
        "predict_xstart": False,
        "rescale_learned_sigmas": True,
        "timestep_respacing": "",
    },
}


def test_decoder_yaml_reads_as_the_preset(tmp_path: Path) -> None:
    path = tmp_path / "decoder_900M_vit_l.yaml"
    path.write_text(yaml.safe_dump(DECODER_YAML))
    cfg = read_karlo_yaml(path)
    assert cfg == karlo_decoder_config()
    assert cfg.channel_mult == (1, 2, 3, 4)  # Karlo's default for 64 px when left empty
    assert read_karlo_yaml(path, decoder_in_channels=3) == karlo_decoder_config(in_channels=3)


def test_presets_by_name() -> None:
    assert sorted(KARLO_PRESETS) == [
        "decoder_900M_vit_l",
        "improved_sr_64_256_1.4B",
        "prior_1B_vit_l",
    ]
    prior = karlo_preset("prior_1B_vit_l")
    assert (prior.width, prior.layers, prior.heads, prior.diffusion.prediction) == (
        2048,
        20,
        32,
        "x0",
    )
    with pytest.raises(ConfigError, match="unknown Karlo preset 'big'"):
        karlo_preset("big")


def test_unsupported_yaml_is_refused() -> None:
    with pytest.raises(ConfigError, match="model.type 'clip'"):
        config_from_karlo_yaml({"model": {"type": "clip", "hparams": {}}})
    bad = {**DECODER_YAML, "diffusion": {"noise_schedule": "sigmoid"}}
    with pytest.raises(ConfigError, match="noise_schedule 'sigmoid'"):
        config_from_karlo_yaml(bad)
    with pytest.raises(ConfigError, match="missing the key 'num_channels'"):
        hp = {k: v for k, v in DECODER_YAML["model"]["hparams"].items() if k != "num_channels"}
        config_from_karlo_yaml({"model": {"type": "t2i-decoder", "hparams": hp}})
