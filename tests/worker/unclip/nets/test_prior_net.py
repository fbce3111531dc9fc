"""PriorNet: shapes, dtypes, causality over padded text and the embedding stats helpers."""

from __future__ import annotations

import pytest
import torch

from worker.unclip.configs import PriorConfig
from worker.unclip.nets import PriorNet, denormalise_image_emb, normalise_image_emb


def _inputs(cfg: PriorConfig, b: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, cfg.text_ctx, dtype=torch.bool)
    mask[0, 3:] = False
    return {
        "x_t": torch.randn(b, cfg.clip_dim, generator=g),
        "t": torch.tensor([5, 900])[:b],
        "text_emb": torch.randn(b, cfg.clip_dim, generator=g),
        "text_tokens": torch.randn(b, cfg.text_ctx, cfg.text_width, generator=g),
        "text_mask": mask,
    }


def _run(net: PriorNet, x: dict[str, torch.Tensor]) -> torch.Tensor:
    kw = {k: v for k, v in x.items() if k not in ("x_t", "t")}
    with torch.no_grad():
        return net(x["x_t"], x["t"], **kw)


def test_prior_output_shape_and_dtype(tiny_prior_cfg: PriorConfig) -> None:
    torch.manual_seed(0)
    out = _run(PriorNet(tiny_prior_cfg).eval(), _inputs(tiny_prior_cfg))
    assert out.shape == (2, tiny_prior_cfg.clip_dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_prior_ignores_padded_text_tokens(tiny_prior_cfg: PriorConfig) -> None:
    torch.manual_seed(0)
    net = PriorNet(tiny_prior_cfg).eval()
    x = _inputs(tiny_prior_cfg)
    changed = dict(x, text_tokens=x["text_tokens"].clone())
    changed["text_tokens"][0, 3:] += 5.0  # row 0 is padding from token 3 on
    a, b = _run(net, x), _run(net, changed)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    changed["text_tokens"][0, 1] += 5.0  # a real token does matter
    assert not torch.allclose(_run(net, changed)[0], a[0])


def test_prior_batch_rows_are_independent(tiny_prior_cfg: PriorConfig) -> None:
    torch.manual_seed(0)
    net = PriorNet(tiny_prior_cfg).eval()
    x = _inputs(tiny_prior_cfg)
    both = _run(net, x)
    second = _run(net, {k: v[1:] for k, v in x.items()})
    torch.testing.assert_close(both[1:], second, rtol=1e-5, atol=1e-6)


def test_prior_bf16_returns_input_dtype(tiny_prior_cfg: PriorConfig) -> None:
    torch.manual_seed(0)
    net = PriorNet(tiny_prior_cfg).eval()
    x = _inputs(tiny_prior_cfg)
    ref = _run(net, x)
    out = _run(net.to(torch.bfloat16), x)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()


def test_prior_rejects_wrong_text_length(tiny_prior_cfg: PriorConfig) -> None:
    net = PriorNet(tiny_prior_cfg)
    x = _inputs(tiny_prior_cfg)
    x["text_tokens"] = x["text_tokens"][:, :4]
    with pytest.raises(ValueError, match="text_ctx=6"):
        _run(net, x)


def test_normalise_round_trip() -> None:
    g = torch.Generator().manual_seed(1)
    emb, mean, std = (
        torch.randn(3, 8, generator=g),
        torch.randn(8, generator=g),
        torch.rand(8) + 0.5,
    )
    z = normalise_image_emb(emb, mean, std)
    torch.testing.assert_close(z, (emb - mean) / std)
    torch.testing.assert_close(denormalise_image_emb(z, mean, std), emb)
