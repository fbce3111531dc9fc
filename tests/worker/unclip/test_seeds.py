"""Seeds: per-request generators, and CPU results that do not depend on the batch."""

from __future__ import annotations

import torch

from worker.unclip.seeds import derive_seed, make_generator, row_stable, stable_matmul


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


def test_row_stable_makes_rows_independent_of_the_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(8, 16, 3, padding=1),
            torch.nn.Flatten(1),
            torch.nn.Linear(16 * 16 * 16, 32),
        )
    images = torch.randn(17, 8, 16, 16, generator=gen)
    with torch.inference_mode(), row_stable([net]):
        alone = net(images[:1])
        for batch in (2, 3, 16, 17):
            assert torch.equal(net(images[:batch])[:1], alone), batch
        assert torch.equal(net(images[5:9])[1], net(images[6:7])[0])
    assert "forward" not in net[0].__dict__ and "forward" not in net[2].__dict__


def test_stable_matmul_pads_few_rows() -> None:
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(8, 32, generator=gen), torch.randn(32, 64, generator=gen)
    assert torch.equal(stable_matmul(x[:1], w), stable_matmul(x, w)[:1])
    assert stable_matmul(x[:3], w).shape == (3, 64)
