"""Our networks agree with kakaobrain/karlo's code to 1e-5 on tiny seeded networks.

The fixture is written by bench/karlo_reference/make_fixture.py (see
tests/fixtures/karlo/README.md); it holds Karlo's outputs, never Karlo's code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from worker.unclip.karlo_configs import config_from_karlo_yaml
from worker.unclip.nets import (
    DecoderNet,
    PriorNet,
    UpsamplerPair,
    pad_decoder_input_channels,
    resize_low_res,
)

FIXTURE = Path(__file__).parents[3] / "tests/fixtures/karlo"
TOL = {"rtol": 0.0, "atol": 1e-5}


@pytest.fixture(scope="module")
def fixture() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, object]]:
    packed = load_file(FIXTURE / "karlo-tiny-weights.safetensors")
    weights = {
        k: v.float() * packed[k + "#scale"] for k, v in packed.items() if not k.endswith("#scale")
    }
    io = load_file(FIXTURE / "karlo-tiny-io.safetensors")
    with safe_open(FIXTURE / "karlo-tiny-io.safetensors", "pt") as fh:
        meta = fh.metadata()
    return (
        weights,
        io,
        {"yaml": json.loads(meta["yaml"]), "sizes": json.loads(meta["upsampler_sizes"])},
    )


def _stage(weights: dict[str, torch.Tensor], stage: str, prefix: str) -> dict[str, torch.Tensor]:
    start = f"{stage}/{prefix}"
    return {k[len(start) :]: v for k, v in weights.items() if k.startswith(start)}


@torch.no_grad()
def test_prior_matches_karlo(fixture) -> None:  # type: ignore[no-untyped-def]
    weights, io, meta = fixture
    net = PriorNet(config_from_karlo_yaml(meta["yaml"]["prior"])).eval()
    net.load_state_dict(_stage(weights, "prior", "model."), strict=True)
    out = net(
        io["prior.x_t"],
        io["t"],
        text_emb=io["text_emb"],
        text_tokens=io["text_tokens"],
        text_mask=io["text_mask"],
    )
    assert io["prior.out"].abs().max() > 0.5  # the reference is not trivially small
    torch.testing.assert_close(out, io["prior.out"], **TOL)


@pytest.mark.parametrize("in_channels", [3, 7])
@torch.no_grad()
def test_decoder_matches_karlo(fixture, in_channels: int) -> None:  # type: ignore[no-untyped-def]
    weights, io, meta = fixture
    cfg = config_from_karlo_yaml(meta["yaml"]["decoder"], decoder_in_channels=in_channels)
    net = DecoderNet(cfg).eval()
    state = pad_decoder_input_channels(_stage(weights, "decoder", "model."), in_channels)
    net.load_state_dict(state, strict=True)
    x = io["decoder.x"]
    if in_channels == 7:  # anything in the new channels: their weights are zero
        x = torch.cat([x, torch.randn(3, 3, 16, 16), torch.ones(3, 1, 16, 16)], dim=1)
    out = net(
        x,
        io["t"],
        image_emb=io["decoder.image_emb"],
        text_emb=io["text_emb"],
        text_tokens=io["text_tokens"],
        text_mask=io["text_mask"],
        keep_image_emb=io["decoder.keep_image_emb"],
    )
    assert out.shape == io["decoder.out"].shape == (3, 6, 16, 16)
    torch.testing.assert_close(out, io["decoder.out"], **TOL)


@torch.no_grad()
def test_upsampler_matches_karlo(fixture) -> None:  # type: ignore[no-untyped-def]
    weights, io, meta = fixture
    cfg = config_from_karlo_yaml(meta["yaml"]["upsampler"], upsampler_sizes=tuple(meta["sizes"]))
    pair = UpsamplerPair(cfg).eval()
    pair.load_state_dict(_stage(weights, "upsampler", ""), strict=True)
    low, x = io["upsampler.low_res"], io["upsampler.x"]
    torch.testing.assert_close(resize_low_res(low, 16), io["upsampler.low_res_resized"], **TOL)
    for last, key in ((False, "upsampler.first_out"), (True, "upsampler.last_out")):
        torch.testing.assert_close(pair(x, io["t"], low_res=low, last=last), io[key], **TOL)
