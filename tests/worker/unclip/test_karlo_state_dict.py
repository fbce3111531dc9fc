"""The full Karlo v1 alpha sizes produce exactly the keys and shapes of its checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from worker.unclip.karlo_configs import (
    karlo_decoder_config,
    karlo_prior_config,
    karlo_upsampler_config,
)
from worker.unclip.karlo_import import CHECKPOINT_PREFIXES
from worker.unclip.nets import DecoderNet, PriorNet, UpsamplerPair

LAYOUT = Path(__file__).parents[3] / "tests/fixtures/karlo/karlo-state-dict.json"
FILES = {
    "prior": "prior-ckpt-step=01000000-of-01000000.ckpt",
    "decoder": "decoder-ckpt-step=01000000-of-01000000.ckpt",
    "upsampler": "improved-sr-ckpt-step=1.2M.ckpt",
}


def _build(stage: str) -> nn.Module:
    with torch.device("meta"):
        if stage == "prior":
            return PriorNet(karlo_prior_config())
        if stage == "decoder":
            return DecoderNet(karlo_decoder_config(in_channels=3))
        return UpsamplerPair(karlo_upsampler_config())


@pytest.mark.parametrize("stage", sorted(FILES))
def test_full_size_keys_and_shapes_match_karlo(stage: str) -> None:
    expected = json.loads(LAYOUT.read_text())[FILES[stage]]
    prefix = CHECKPOINT_PREFIXES[stage]
    ours = {prefix + k: list(v.shape) for k, v in _build(stage).state_dict().items()}
    assert sorted(set(expected) - set(ours)) == []  # nothing missing
    assert sorted(set(ours) - set(expected)) == []  # nothing unexpected
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}


def test_seven_channel_decoder_differs_only_in_first_conv() -> None:
    expected = json.loads(LAYOUT.read_text())[FILES["decoder"]]
    with torch.device("meta"):
        net = DecoderNet(karlo_decoder_config(in_channels=7))
    shapes = {"model." + k: list(v.shape) for k, v in net.state_dict().items()}
    diff = {k for k in shapes if shapes[k] != expected[k]}
    assert diff == {"model.input_blocks.0.0.weight"}
    assert shapes["model.input_blocks.0.0.weight"] == [320, 7, 3, 3]
