"""Frozen graphs of the decoder and upsampler calls: the eager bytes, cached per shape, off
where they could change a result (batch-invariant mode, autograd)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import torch

from worker.unclip import frozen_graphs
from worker.unclip.batch_invariance import batch_invariance
from worker.unclip.family import Family
from worker.unclip.frozen_graphs import GraphCache
from worker.unclip.nets import DecoderContext
from worker.unclip.reference_family import make_reference_family
from worker.unclip.render import render
from worker.unclip.render_spec import RenderSpec, StageSteps


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def family() -> Family:
    return make_reference_family(3)


def _decoder_inputs(
    family: Family, rows: int, padded: bool
) -> tuple[torch.Tensor, torch.Tensor, DecoderContext]:
    cfg, clip = family.decoder.cfg, family.clip
    g = torch.Generator().manual_seed(rows)
    text = clip.encode_text(["a red cube"] * rows)
    mask = text.mask.clone()
    if not padded:
        mask[:] = True  # no padded token: the context has no mask at all
    ctx = family.decoder.encode_context(
        image_emb=torch.randn(rows, cfg.clip_dim, generator=g),
        text_emb=text.pooled,
        text_tokens=text.tokens,
        text_mask=mask,
    )
    x = torch.randn(rows, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g)
    return x, torch.randint(0, 1000, (rows,), generator=g), ctx


@pytest.mark.parametrize("padded", [True, False])
def test_decoder_graph_gives_the_eager_output(family: Family, padded: bool) -> None:
    cache = GraphCache(trace_after_calls=0)
    with torch.inference_mode():
        x, t, ctx = _decoder_inputs(family, 2, padded)
        assert (ctx.attention.mask is not None) == padded
        eager = family.decoder.denoise(x, t, ctx)
        for _ in range(3):  # the first calls profile, later ones run the optimised graph
            out = frozen_graphs.denoise(cache, family.decoder, x, t, ctx)
            assert torch.equal(out, eager)
    assert len(cache) == 1


def test_upsampler_graphs_per_network_and_shape(family: Family) -> None:
    cache = GraphCache(trace_after_calls=0)
    pair = family.upsampler
    assert pair.model_last_step is not None
    size = pair.cfg.image_size
    with torch.inference_mode():
        for rows in (1, 3):
            g = torch.Generator().manual_seed(rows)
            x, low = (torch.randn(rows, 3, size, size, generator=g) for _ in range(2))
            t = torch.full((rows,), 500)
            for net in (pair.model_first_steps, pair.model_last_step):
                eager = net(x, t, low_res=low)
                for _ in range(2):
                    assert torch.equal(frozen_graphs.upsample(cache, net, x, t, low), eager)
    assert len(cache) == 4  # 2 networks x 2 batch shapes


def test_no_graph_in_batch_invariant_mode_or_with_autograd(family: Family) -> None:
    cache = GraphCache(trace_after_calls=0)
    x, t, ctx = _decoder_inputs(family, 2, True)
    with torch.inference_mode(), batch_invariance(True):
        frozen_graphs.denoise(cache, family.decoder, x, t, ctx)
    with torch.no_grad():
        x, t, ctx = _decoder_inputs(family, 2, True)
    with torch.enable_grad():
        out = frozen_graphs.denoise(cache, family.decoder, x, t, ctx)
    assert out.requires_grad  # the eager call, which autograd can follow
    assert len(cache) == 0
    assert not frozen_graphs.usable(None, x)


def test_cache_keeps_the_most_recent_graphs(family: Family) -> None:
    cache = GraphCache(max_graphs=2, trace_after_calls=0)
    net, size = family.upsampler.model_first_steps, family.upsampler.cfg.image_size
    with torch.inference_mode():
        for rows in (1, 2, 3, 1):
            x = torch.zeros(rows, 3, size, size)
            frozen_graphs.upsample(cache, net, x, torch.full((rows,), 9), x)
    assert len(cache) == 2


def test_concurrent_calls_in_threads_get_their_own_results(family: Family) -> None:
    cache = GraphCache(trace_after_calls=0)
    net, size = family.upsampler.model_first_steps, family.upsampler.cfg.image_size
    cases, results, errors = {}, {}, []
    with torch.inference_mode():
        for rows in (1, 2, 3):
            x = torch.randn(rows, 3, size, size, generator=torch.Generator().manual_seed(rows))
            t = torch.full((rows,), 100 * rows)
            cases[rows] = (x, t, net(x, t, low_res=x))

    def run(rows: int) -> None:
        try:
            with torch.inference_mode():
                x, t, _ = cases[rows]
                results[rows] = [frozen_graphs.upsample(cache, net, x, t, x) for _ in range(3)]
        except Exception as exc:  # surfaced below: a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(rows,)) for rows in (1, 2, 3, 1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for rows, outs in results.items():
        assert all(torch.equal(out, cases[rows][2]) for out in outs)


def test_render_bytes_equal_with_and_without_graphs() -> None:
    family = make_reference_family(4)
    spec = RenderSpec(kind="generate", prompt="a blue ball", n=2, seed=7,
                      steps=StageSteps(2, 2, 2))  # fmt: skip

    def rendered() -> list[bytes]:
        return [image.tobytes() for image in render(family, [spec])[0]]

    family.frozen_graphs = False
    eager = rendered()
    family.frozen_graphs = True
    family.frozen_graphs_trace_after_calls = 0  # trace on first use
    assert rendered() == eager
    assert family.graphs is not None and len(family.graphs) == 3  # decoder, 2 upsampler nets
    family.to("cpu", torch.float32)
    assert len(family.graphs) == 0  # moved weights: traces of the old ones are dropped


def test_a_shape_is_traced_on_its_nth_call(family: Family) -> None:
    cache = GraphCache(trace_after_calls=4)
    net, size = family.upsampler.model_first_steps, family.upsampler.cfg.image_size
    calls = []

    def eager(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return net(x, t, low_res=x)

    with torch.inference_mode():
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
        t = torch.full((2,), 300)
        want = net(x, t, low_res=x)
        for n in range(6):
            out = cache.call(("up", 0), lambda: frozen_graphs._UpsamplerStep(net), (x, t, x),
                             lambda: eager(x, t))  # fmt: skip
            assert torch.equal(out, want)
            assert len(cache) == (1 if n >= 4 else 0)  # 4 eager calls, then the graph
        lone, t3 = torch.randn(3, 3, size, size), torch.full((3,), 300)
        cache.call(("up", 0), lambda: frozen_graphs._UpsamplerStep(net), (lone, t3, lone),
                   lambda: eager(lone, t3))  # fmt: skip
    assert calls == [2, 2, 2, 2, 3]  # the 5th and 6th ran the graph; a new shape starts eager
    assert len(cache) == 1


def test_a_negative_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="trace_after_calls must be >= 0, got -1"):
        GraphCache(trace_after_calls=-1)


def test_a_family_renders_eagerly_until_a_shape_has_earned_its_graph() -> None:
    family = make_reference_family(4)
    spec = RenderSpec(kind="generate", prompt="a red cube", n=1, seed=3,
                      steps=StageSteps(2, 2, 2))  # fmt: skip
    assert family.frozen_graphs_trace_after_calls == frozen_graphs.TRACE_AFTER_CALLS > 2
    render(family, [spec])  # 2 decoder calls, 1 of each upsampler network
    assert family.graphs is not None and len(family.graphs) == 0  # all eager
