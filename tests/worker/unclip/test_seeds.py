"""Seeds: per-request generators that depend only on (seed, stage, image, candidate)."""

from __future__ import annotations

import torch

from worker.unclip.seeds import derive_seed, make_generator


def test_seeds_depend_on_every_part() -> None:
    base = derive_seed(7, "prior", 0)
    assert base == derive_seed(7, "prior", 0)
    others = {
        derive_seed(8, "prior", 0),
        derive_seed(7, "decoder", 0),
        derive_seed(7, "prior", 1),
        derive_seed(7, "prior", 0, candidate=1),
    }
    assert base not in others and len(others) == 4
    assert 0 <= base < 2**63


def test_generators_repeat() -> None:
    a = torch.randn(5, generator=make_generator(1, "decoder", 2, "cpu"))
    b = torch.randn(5, generator=make_generator(1, "decoder", 2, "cpu"))
    c = torch.randn(5, generator=make_generator(1, "decoder", 3, "cpu"))
    assert torch.equal(a, b) and not torch.equal(a, c)
