"""Spherical interpolation of CLIP image embeddings: unCLIP's interpolations (paper, section 3).

DALL-E 2 interpolates between two images by slerp of their CLIP image embeddings
(Ramesh et al. 2022, "Hierarchical Text-Conditional Image Generation with CLIP Latents",
section 3.2) and decodes the result. Directions are slerped; lengths (CLIP embeddings are
un-normalised) are interpolated linearly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

PARALLEL_EPS = 1e-6


def slerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """The point a fraction `t` of the way from `a` to `b` along the sphere; (..., D) each."""
    a_len, b_len = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    a_dir, b_dir = a / a_len, b / b_len
    cos = (a_dir * b_dir).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    # Nearly parallel directions: the chord is the arc, so lerp and renormalise.
    chord = (1 - t) * a_dir + t * b_dir
    arc = (torch.sin((1 - t) * omega) * a_dir + torch.sin(t * omega) * b_dir) / sin.clamp_min(
        PARALLEL_EPS
    )
    direction = torch.where(sin > PARALLEL_EPS, arc, chord / chord.norm(dim=-1, keepdim=True))
    return direction * ((1 - t) * a_len + t * b_len)


def mix_embeddings(embeddings: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """A weighted spherical mix of 2+ embeddings (each (..., D)), folded in one at a time.

    With two entries it is exactly slerp(e0, e1, w1 / (w0 + w1)); each further entry moves
    the running mix toward it by its share of the weight so far.
    """
    if len(embeddings) != len(weights) or len(embeddings) < 2:
        raise ValueError(f"mix needs 2 or more embeddings with one weight each, got "
                         f"{len(embeddings)} embeddings and {len(weights)} weights")  # fmt: skip
    if any(not w > 0 for w in weights):
        raise ValueError(f"mix weights must be positive, got {list(weights)}")
    mixed, total = embeddings[0], float(weights[0])
    for emb, weight in zip(embeddings[1:], weights[1:], strict=True):
        total += float(weight)
        mixed = slerp(mixed, emb, float(weight) / total)
    return mixed
