"""Spherical mixing of CLIP image embeddings."""

from __future__ import annotations

import math

import pytest
import torch

from worker.unclip.embedding_mix import mix_embeddings, slerp


def _angle(a: torch.Tensor, b: torch.Tensor) -> float:
    return math.degrees(torch.acos(torch.nn.functional.cosine_similarity(a, b, dim=-1)).item())


def test_slerp_ends_lengths_and_equal_angles() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(16, generator=g) * 3, torch.randn(16, generator=g)
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    mid = slerp(a, b, 0.5)
    assert _angle(a, mid) == pytest.approx(_angle(mid, b), abs=1e-3)
    assert _angle(a, mid) == pytest.approx(_angle(a, b) / 2, abs=1e-3)
    assert mid.norm().item() == pytest.approx((a.norm() + b.norm()).item() / 2, rel=1e-5)


def test_parallel_inputs_do_not_divide_by_zero() -> None:
    a = torch.tensor([1.0, 2.0, 3.0])
    out = slerp(a, 2 * a, 0.25)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, 1.25 * a, atol=1e-5)


def test_weighted_mix_of_two_is_slerp_and_equal_weights_are_symmetric() -> None:
    g = torch.Generator().manual_seed(1)
    a, b, c = (torch.randn(2, 8, generator=g) for _ in range(3))
    assert torch.allclose(mix_embeddings([a, b], [1.0, 3.0]), slerp(a, b, 0.75), atol=1e-6)
    # Three orthogonal embeddings at equal weight: the mix sits near their centroid direction,
    # 54.7 degrees from each (the fold is within a few degrees of it).
    basis = torch.eye(3) * 2.0
    third = mix_embeddings(list(basis), [1.0, 1.0, 1.0])
    assert all(50 < _angle(third, e) < 61 for e in basis)
    assert third.norm().item() == pytest.approx(2.0, rel=1e-5)
    with pytest.raises(ValueError, match="positive"):
        mix_embeddings([a, b], [1.0, 0.0])
    with pytest.raises(ValueError, match="2 or more"):
        mix_embeddings([a], [1.0])
