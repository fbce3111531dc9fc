"""Batch-invariant mode: installed once, switched per thread, rows independent of the batch."""

from __future__ import annotations

import threading

import torch
from torch import nn

from worker.unclip import batch_invariance
from worker.unclip.batch_invariance import (
    InvariantConv2d,
    InvariantLinear,
    current_mode,
    install,
    matmul,
)
from worker.unclip.batch_invariance import (
    batch_invariance as invariant_mode,
)


def _net() -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.Flatten(1),
                             nn.Linear(16 * 16 * 16, 32))  # fmt: skip


def test_install_keeps_the_weights_and_the_plain_results() -> None:
    net = _net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(3, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        before = net(x)
        install([net])
        install([net])  # idempotent
        after = net(x)
    assert isinstance(net[0], InvariantConv2d) and isinstance(net[2], InvariantLinear)
    assert type(net[0]).__mro__[1] is nn.Conv2d
    assert net.state_dict().keys() == state.keys()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    assert torch.equal(before, after)  # mode off: the plain kernels
    assert "forward" not in net[0].__dict__ and "forward" not in net[2].__dict__


def test_mode_makes_rows_independent_of_the_batch() -> None:
    net = _net()
    install([net])
    images = torch.randn(17, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode(), invariant_mode(True):
        alone = net(images[:1])
        for batch in (2, 3, 16, 17):
            assert torch.equal(net(images[:batch])[:1], alone), batch
        assert torch.equal(net(images[5:9])[1], net(images[6:7])[0])
    assert current_mode() is None


def test_matmul_pads_few_rows_in_the_mode_only() -> None:
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(8, 32, generator=gen), torch.randn(32, 64, generator=gen)
    assert torch.equal(matmul(x, w), x @ w)
    with invariant_mode(True):
        assert torch.equal(matmul(x[:1], w), matmul(x, w)[:1])
        assert matmul(x[:3], w).shape == (3, 64)


def test_mode_covers_attention_modules_and_many_row_batches() -> None:
    """nn.MultiheadAttention and open_clip's AttentionPool2d run their projections inside
    torch's functional attention; batches of 4 and 8 rows must agree too (on an Intel Xeon a
    4-row product differed in the last bits from the same rows among 8)."""
    from open_clip.modified_resnet import AttentionPool2d

    torch.manual_seed(0)
    attention = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    pool = AttentionPool2d(4, 32, 4, 16).eval()
    linear = nn.Linear(32, 48)
    install([attention, pool, linear])
    assert isinstance(pool, AttentionPool2d) and type(pool) is not AttentionPool2d
    tokens, maps = torch.randn(9, 7, 32), torch.randn(9, 32, 4, 4)
    rows = torch.randn(9, 32)
    with torch.no_grad(), invariant_mode(True):
        whole = attention(tokens, tokens, tokens, need_weights=False)[0]
        for b in (1, 2, 4, 8):
            part = attention(tokens[-b:], tokens[-b:], tokens[-b:], need_weights=False)[0]
            assert torch.equal(part, whole[-b:])
            assert torch.equal(pool(maps[-b:]), pool(maps)[-b:])
            assert torch.equal(linear(rows[-b:]), linear(rows)[-b:])
            assert torch.equal(linear(tokens[-b:]), linear(tokens)[-b:])


def test_the_mode_belongs_to_the_thread_that_set_it() -> None:
    """Two threads inside blocks of opposite modes, at the same time, each see their own."""
    barrier = threading.Barrier(2, timeout=10)
    seen: dict[str, object] = {}

    def run(name: str, on: bool) -> None:
        with invariant_mode(on, small_map=64 if on else batch_invariance.SMALL_MAP):
            barrier.wait()  # both blocks are open now
            seen[name] = current_mode()
            barrier.wait()

    modes = (("on", True), ("off", False))
    threads = [threading.Thread(target=run, args=mode) for mode in modes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["on"] == batch_invariance.Mode(small_map=64) and seen["off"] is None
    assert current_mode() is None


def test_group_norm_of_channels_last_maps_is_per_image_in_the_mode() -> None:
    """With 2 threads PyTorch's channels-last GroupNorm gives an image other bits inside a
    batch; in the mode each image's result equals its result alone (the upsamplers' case)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, 64, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
        weight, bias = torch.randn(64, generator=g), torch.randn(64, generator=g)
        alone = [
            batch_invariance.group_norm(x[i : i + 1], 32, weight, bias, 1e-5) for i in range(4)
        ]
        with batch_invariance.batch_invariance(True):
            batched = batch_invariance.group_norm(x, 32, weight, bias, 1e-5)
        plain = batch_invariance.group_norm(x, 32, weight, bias, 1e-5)  # mode off: one call
        assert torch.equal(batched, torch.cat(alone))
        torch.testing.assert_close(plain, batched, rtol=0.0, atol=1e-4)
    finally:
        torch.set_num_threads(before)
