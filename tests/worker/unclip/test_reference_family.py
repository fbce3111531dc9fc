"""The reference family: small, seeded, reacting to its inputs, and savable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from worker.unclip.family import load_family
from worker.unclip.reference_family import make_reference_family, save_reference_family


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_sizes_match_the_brief() -> None:
    family = make_reference_family(0)
    assert family.decoder_size == 32 and family.final_size == 64
    assert family.decoder_config.in_channels == 7
    assert family.upsampler.model_last_step is not None
    assert family.decoder.cfg.has_null_image_emb
    assert family.defaults.prior_candidates == 2


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    state = torch.random.get_rng_state()
    a, b, c = make_reference_family(1), make_reference_family(1), make_reference_family(2)
    assert torch.equal(torch.random.get_rng_state(), state)
    for name, net in a.networks().items():
        other = b.networks()[name].state_dict()
        assert all(torch.equal(v, other[k]) for k, v in net.state_dict().items()), name
    assert not torch.equal(a.decoder.out[2].weight, c.decoder.out[2].weight)


def test_networks_react_to_their_inputs() -> None:
    family = make_reference_family(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 32, 32, generator=gen)
    t = torch.tensor([10, 900])
    tokens = torch.randn(2, 77, 32, generator=gen)
    mask = torch.ones(2, 77, dtype=torch.bool)
    emb = torch.randn(2, 32, generator=gen)
    with torch.inference_mode():
        out = family.decoder(x, t, image_emb=emb, text_emb=emb, text_tokens=tokens, text_mask=mask)
        moved = family.decoder(
            x, t, image_emb=-emb, text_emb=emb, text_tokens=tokens, text_mask=mask
        )
    assert out.shape == (2, 6, 32, 32) and float(out.abs().mean()) > 1e-3
    assert not torch.allclose(out, moved)


def test_save_reference_family_loads_back(tmp_path: Path) -> None:
    path = save_reference_family(tmp_path / "ref", seed=4)
    loaded, made = load_family(path), make_reference_family(4)
    assert torch.equal(loaded.decoder.cf_param, made.decoder.cf_param)
    assert torch.equal(loaded.prior_mean, made.prior_mean)
