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


def test_row_stable_covers_attention_modules_and_many_row_batches() -> None:
    """nn.MultiheadAttention and open_clip's AttentionPool2d run their projections inside
    torch's functional attention; batches of 4 and 8 rows must agree too (on an Intel Xeon a
    4-row product differed in the last bits from the same rows among 8)."""
    from open_clip.modified_resnet import AttentionPool2d

    torch.manual_seed(0)
    attention = torch.nn.MultiheadAttention(32, 4, batch_first=True).eval()
    pool = AttentionPool2d(4, 32, 4, 16).eval()
    linear = torch.nn.Linear(32, 48)
    tokens, maps = torch.randn(9, 7, 32), torch.randn(9, 32, 4, 4)
    rows = torch.randn(9, 32)
    with torch.no_grad(), row_stable([attention, pool, linear]):
        whole = attention(tokens, tokens, tokens, need_weights=False)[0]
        for b in (1, 2, 4, 8):
            part = attention(tokens[-b:], tokens[-b:], tokens[-b:], need_weights=False)[0]
            assert torch.equal(part, whole[-b:])
            assert torch.equal(pool(maps[-b:]), pool(maps)[-b:])
            assert torch.equal(linear(rows[-b:]), linear(rows)[-b:])
            assert torch.equal(linear(tokens[-b:]), linear(tokens)[-b:])
    assert "forward" not in attention.__dict__ and "forward" not in pool.__dict__
