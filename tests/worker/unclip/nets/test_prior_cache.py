"""The prior's text-prefix cache gives PriorNet.forward's outputs (to 1e-5) at every step.

Checked on the tiny test config, the shipped shapes family's prior config, a Karlo-layout
config (77 text tokens) and the tiny Karlo fixture's weights against Karlo's own outputs;
and through the prior stage's whole guided sampling loop.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from worker.unclip import prior_stage
from worker.unclip.clip_encoder import TextEncoding
from worker.unclip.configs import PriorConfig
from worker.unclip.guidance import NetFn, concat_encodings
from worker.unclip.karlo_configs import config_from_karlo_yaml, karlo_prior_config
from worker.unclip.nets import PriorNet, prior_net
from worker.unclip.nets.prior_cache import encode_prefix, predict_with_prefix
from worker.unclip.reference_family import make_reference_family
from worker.unclip.render_spec import RenderSpec, StageSteps

ROOT = Path(__file__).parents[4]
FIXTURE = ROOT / "tests/fixtures/karlo"
ATOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _text(cfg: PriorConfig, b: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, cfg.text_ctx, dtype=torch.bool)
    for row in range(b):  # rows padded after different lengths, one row not at all
        mask[row, 2 + (row * 5) % cfg.text_ctx :] = row == b - 1
    return {
        "text_emb": torch.randn(b, cfg.clip_dim, generator=g),
        "text_tokens": torch.randn(b, cfg.text_ctx, cfg.text_width, generator=g),
        "text_mask": mask,
    }


def _cached_equals_forward(net: PriorNet, b: int = 4, seed: int = 0) -> None:
    """One prefix, reused over several steps, matches forward at each of them."""
    text = _text(net.cfg, b, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        prefix = encode_prefix(net, **text)
        for t in (999, 500, 0):
            x_t = torch.randn(b, net.cfg.clip_dim, generator=g) * 3
            steps = torch.full((b,), t)
            want = net(x_t, steps, **text)
            got = predict_with_prefix(net, x_t, steps, prefix)
            assert want.abs().max() > 0.1  # not trivially small
            torch.testing.assert_close(got, want, rtol=0.0, atol=ATOL)


def _random_net(cfg: PriorConfig, seed: int = 0) -> PriorNet:
    torch.manual_seed(seed)
    net = PriorNet(cfg).eval()
    with torch.no_grad():  # weights large enough that every position matters
        net.positional_embedding.normal_(0, 0.5)
        net.prd_emb.normal_(0, 0.5)
    return net


def test_tiny_config(tiny_prior_cfg: PriorConfig) -> None:
    _cached_equals_forward(_random_net(tiny_prior_cfg))
    _cached_equals_forward(_random_net(dataclasses.replace(tiny_prior_cfg, final_ln=False)))


def test_shapes_family_config() -> None:
    cfg = PriorConfig.from_dict(json.loads((ROOT / "models/shapes/prior.json").read_text()))
    _cached_equals_forward(_random_net(cfg), b=8)


def test_karlo_layout_config() -> None:
    """Karlo's prior layout (77 text tokens, 768-d CLIP) at a small width and depth."""
    cfg = dataclasses.replace(karlo_prior_config(), width=128, layers=3, heads=4)
    _cached_equals_forward(_random_net(cfg), b=3)


@torch.no_grad()
def test_karlo_fixture_weights_match_karlo() -> None:
    packed = load_file(FIXTURE / "karlo-tiny-weights.safetensors")
    start = "prior/model."
    state = {
        k[len(start) :]: v.float() * packed[k + "#scale"]
        for k, v in packed.items()
        if k.startswith(start) and not k.endswith("#scale")
    }
    io = load_file(FIXTURE / "karlo-tiny-io.safetensors")
    with safe_open(FIXTURE / "karlo-tiny-io.safetensors", "pt") as fh:
        yaml = json.loads(fh.metadata()["yaml"])
    cfg = config_from_karlo_yaml(yaml["prior"])
    assert isinstance(cfg, PriorConfig)
    net = PriorNet(cfg).eval()
    net.load_state_dict(state, strict=True)
    prefix = encode_prefix(
        net, text_emb=io["text_emb"], text_tokens=io["text_tokens"], text_mask=io["text_mask"]
    )
    out = predict_with_prefix(net, io["prior.x_t"], io["t"], prefix)
    torch.testing.assert_close(out, io["prior.out"], rtol=0.0, atol=ATOL)


def test_rows_with_the_same_text_share_one_prefix(
    tiny_prior_cfg: PriorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Candidates and unconditional rows repeat their text: given text ids, the prefix runs
    once per distinct text (here 2 rows of 6) and every row still gets forward's output."""
    net = _random_net(tiny_prior_cfg)
    ids = torch.tensor([0, 1, 1, 0, 0, 1])
    text = {k: v[ids] for k, v in _text(tiny_prior_cfg, 2, 0).items()}
    rows_seen: list[int] = []
    forward_kv = prior_net.ResidualAttentionBlock.forward_kv

    def count(self: prior_net.ResidualAttentionBlock, x: torch.Tensor, *args: Any) -> Any:
        rows_seen.append(x.shape[0])
        return forward_kv(self, x, *args)

    monkeypatch.setattr(prior_net.ResidualAttentionBlock, "forward_kv", count)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        shared = encode_prefix(net, **text, text_ids=ids + 5)  # any ids, equal where equal
        assert rows_seen == [2] * net.cfg.layers  # every layer ran on the 2 distinct rows
        rows_seen.clear()
        alone = encode_prefix(net, **text)  # no ids: every row computed
        assert rows_seen == [6] * net.cfg.layers
        x_t = torch.randn(6, net.cfg.clip_dim, generator=g) * 3
        steps = torch.tensor([999, 10, 500, 0, 999, 250])
        want = net(x_t, steps, **text)
        for prefix in (shared, alone):
            got = predict_with_prefix(net, x_t, steps, prefix)
            torch.testing.assert_close(got, want, rtol=0.0, atol=ATOL)
        with pytest.raises(ValueError, match=r"text_ids must have shape \(6,\), got \(5,\)"):
            encode_prefix(net, **text, text_ids=ids[:5])


def test_rows_must_match_the_prefix(tiny_prior_cfg: PriorConfig) -> None:
    net = _random_net(tiny_prior_cfg)
    prefix = encode_prefix(net, **_text(tiny_prior_cfg, 2, 0))
    with pytest.raises(ValueError, match="x_t has 3 rows but the text prefix was encoded for 2"):
        predict_with_prefix(net, torch.zeros(3, tiny_prior_cfg.clip_dim), torch.zeros(3), prefix)


def _uncached_net_fn(family: object, cond: TextEncoding, null: TextEncoding) -> NetFn:
    texts = {"cond": cond, "both": concat_encodings(cond, null)}

    def net_fn(x: torch.Tensor, t: torch.Tensor, half: str) -> torch.Tensor:
        text = texts[half]
        return family.prior(  # type: ignore[attr-defined, no-any-return]
            x, t, text_emb=text.pooled, text_tokens=text.tokens, text_mask=text.mask
        )

    return net_fn


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_prior_stage_equals_the_uncached_net(monkeypatch: pytest.MonkeyPatch, sampler: str) -> None:
    """The whole guided sampling loop (both halves, best of k) gives the same embeddings."""
    family = make_reference_family(0)
    specs = [
        RenderSpec(
            kind="generate",
            prompt=prompt,
            n=2,
            seed=seed,
            sampler=sampler,
            prior_guidance=scale,
            steps=StageSteps(prior=6, decoder=2, upsampler=2),
        )
        for prompt, seed, scale in (("a red cube", 1, 4.0), ("two blue balls", 2, 1.0))
    ]
    cached = prior_stage.run_prior(family, specs)
    alone = prior_stage.run_prior(family, specs[1:])  # every scale 1: the "cond" half only
    monkeypatch.setattr(prior_stage, "_prior_net_fn", _uncached_net_fn)
    uncached = prior_stage.run_prior(family, specs)
    uncached_alone = prior_stage.run_prior(family, specs[1:])
    for got, want in zip(cached + alone, uncached + uncached_alone, strict=True):
        assert want.abs().max() > 0.1
        torch.testing.assert_close(got, want, rtol=0.0, atol=ATOL)


def test_prior_stage_encodes_each_distinct_prompt_prefix_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """2 prompts x n 2 x k candidates, guided: the prefix runs on 3 rows (2 prompts + the empty
    one), not on 2 * 2 * k * 2."""
    family = make_reference_family(0)
    specs = [
        RenderSpec(kind="generate", prompt=p, n=2, seed=1, steps=StageSteps(3, 2, 2))
        for p in ("a red cube", "two blue balls")
    ]
    prefix_rows: list[int] = []
    forward_kv = prior_net.ResidualAttentionBlock.forward_kv

    def count(self: prior_net.ResidualAttentionBlock, x: torch.Tensor, mask: Any,
              past: Any = None) -> Any:  # fmt: skip
        if past is None:
            prefix_rows.append(x.shape[0])
        return forward_kv(self, x, mask, past)

    monkeypatch.setattr(prior_net.ResidualAttentionBlock, "forward_kv", count)
    assert family.defaults.prior_candidates > 1
    prior_stage.run_prior(family, specs)
    assert set(prefix_rows) == {3}
