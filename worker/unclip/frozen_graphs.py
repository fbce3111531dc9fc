"""Frozen graphs of the UNet calls: the same CPU kernels as eager, without Python's cost per op.

The decoder and upsampler are small UNets whose eager calls spend a good part of their CPU
time in Python and module dispatch between ~300 small kernels. A `torch.jit.trace` of one
network call, frozen (`torch.jit.freeze`: weights and attributes become constants), runs
the same aten kernels in the same order from TorchScript's executor: outputs equal the
eager call's bit for bit (tests/worker/unclip/test_frozen_graphs.py), and a call costs
10-25% less CPU (docs/benchmarks.md, issue 11). `torch.jit.optimize_for_inference`
(oneDNN-prepacked convolutions) and TorchScript's static runtime were measured slower here.

A trace holds for one set of input shapes, so graphs are cached per (network, shapes,
dtypes, strides), most recently used first. Tracing costs about 0.5-2 CPU s (with the two
profiling runs TorchScript's executor makes of a new graph), so a shape is traced only on its
`TRACE_AFTER_CALLS`-th call (rent, then buy: a one-off batch shape never pays a trace), by
one thread while the others run it eagerly. Graphs are used only where they change nothing:
CPU tensors, no autograd, and batch-invariant mode off (its chunked layers decide per call
in Python, which a trace would bake in). Locks make the cache safe for concurrent renders in
threads; a frozen graph itself may run in several threads at once. Python-level module hooks
and patched methods do not run inside a graph: switch `Family.frozen_graphs` off to observe
calls. TorchScript is deprecated in torch 2.x: should tracing fail, the call runs eagerly.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor, nn

from worker.unclip import batch_invariance
from worker.unclip.nets.decoder_net import DecoderContext, DecoderNet
from worker.unclip.nets.unet import AttentionBlock, AttentionContext
from worker.unclip.nets.upsampler_net import UpsamplerNet

MAX_GRAPHS = 24  # per family: (stage network x batch shape) pairs kept
# Eager calls a (network, shapes) key makes before it is traced. A trace with the two
# profiling runs TorchScript makes of a new graph costs ~0.5-2 CPU s, tens of calls' worth of
# what it then saves per call (docs/benchmarks.md, issue 10). Dynamic batching meets many batch
# shapes once: traced on first use, each of those paid a trace it never earned back (and could
# push a useful graph out of the cache). 20 calls: a shape is traced in its second 10-step
# render, a shape met in one render never.
TRACE_AFTER_CALLS = 20


def _signature(inputs: tuple[Any, ...]) -> tuple[Hashable, ...]:
    """Shapes, dtypes and strides of (nested tuples of) tensors: what a trace depends on."""
    out: list[Hashable] = []
    for item in inputs:
        if isinstance(item, tuple):
            out.append(_signature(item))
        else:
            out.append((tuple(item.shape), item.dtype, item.stride()))
    return tuple(out)


class GraphCache:
    """Frozen traces of network calls, keyed by (name, input signature), thread-safe.

    A key runs eagerly until it has been called `trace_after_calls` times (0: trace on first
    use); then one thread traces it while others keep running eagerly.
    """

    def __init__(
        self,
        max_graphs: int = MAX_GRAPHS,
        trace_after_calls: int = TRACE_AFTER_CALLS,
    ) -> None:
        if trace_after_calls < 0:
            raise ValueError(f"trace_after_calls must be >= 0, got {trace_after_calls}")
        self.max_graphs = max_graphs
        self.trace_after_calls = trace_after_calls
        self._graphs: OrderedDict[Hashable, torch.jit.ScriptModule | None] = OrderedDict()
        self._calls: OrderedDict[Hashable, int] = OrderedDict()  # eager calls of keys not traced
        self._tracing: set[Hashable] = set()
        self._lock = threading.Lock()  # the dictionaries
        self._trace_lock = threading.Lock()  # one trace at a time

    def __len__(self) -> int:
        return len(self._graphs)

    def call(
        self,
        name: Hashable,
        build: Callable[[], nn.Module],
        inputs: tuple[Any, ...],
        eager: Callable[[], Tensor],
    ) -> Tensor:
        """build()(*inputs) as its frozen graph once the key has earned one, else eager()."""
        key = (name, _signature(inputs))
        with self._lock:
            traced = key in self._graphs
            graph = self._graphs.get(key)
            if traced:
                self._graphs.move_to_end(key)
            due = (not traced and key not in self._tracing
                   and self._calls.get(key, 0) >= self.trace_after_calls)  # fmt: skip
            if due:
                self._tracing.add(key)
        if graph is not None:
            return graph(*inputs)
        if due:
            graph = self._trace(key, build, inputs)
            if graph is not None:
                return graph(*inputs)
            return eager()
        if not traced:  # a failed trace (None) runs eager for good
            self._count(key)
        return eager()

    def _trace(
        self, key: Hashable, build: Callable[[], nn.Module], inputs: tuple[Any, ...]
    ) -> torch.jit.ScriptModule | None:
        try:
            with self._trace_lock:
                graph = _freeze(build(), inputs)
        finally:
            with self._lock:
                self._tracing.discard(key)
        with self._lock:
            self._calls.pop(key, None)
            self._graphs[key] = graph
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        return graph

    def _count(self, key: Hashable) -> None:
        with self._lock:
            self._calls[key] = self._calls.get(key, 0) + 1
            self._calls.move_to_end(key)
            while len(self._calls) > 4 * self.max_graphs:  # shapes met long ago start over
                self._calls.popitem(last=False)


def _freeze(module: nn.Module, inputs: tuple[Any, ...]) -> torch.jit.ScriptModule | None:
    try:
        with warnings.catch_warnings():
            # Shape checks become constants of the trace: right, since it is keyed by shapes.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation
            traced = torch.jit.trace(module.eval(), inputs, check_trace=False)
            return torch.jit.freeze(traced)
    except (RuntimeError, TypeError, ValueError) as exc:
        warnings.warn(f"frozen graph of {type(module).__name__} failed, running eager: {exc}",
                      RuntimeWarning, stacklevel=3)  # fmt: skip
        return None


def usable(cache: GraphCache | None, x: Tensor) -> bool:
    """Whether a call on x may run as a frozen graph (see the module docstring)."""
    return (
        cache is not None
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and batch_invariance.current_mode() is None
    )


class _DecoderStep(nn.Module):
    """DecoderNet.denoise with the context's tensors as inputs (a trace takes only tensors)."""

    def __init__(self, decoder: DecoderNet) -> None:
        super().__init__()
        self.decoder = decoder
        self.blocks = context_blocks(decoder)

    def forward(
        self, x: Tensor, t: Tensor, cond_emb: Tensor, kv: tuple[Tensor, ...],
        mask: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        cached = {id(b): (kv[2 * i], kv[2 * i + 1]) for i, b in enumerate(self.blocks)}
        attention = AttentionContext(tokens=kv[0], mask=mask, kv=cached)
        return self.decoder.denoise(x, t, DecoderContext(cond_emb, attention))


def context_blocks(decoder: DecoderNet) -> list[AttentionBlock]:
    """The decoder's attention blocks with context keys/values, in module order."""
    return [m for m in decoder.modules() if isinstance(m, AttentionBlock) and m.has_context]


def denoise(cache: GraphCache | None, decoder: DecoderNet, x: Tensor, t: Tensor,
            ctx: DecoderContext) -> Tensor:  # fmt: skip
    """decoder.denoise(x, t, ctx), as a frozen graph where `usable`."""
    if usable(cache, x):
        assert cache is not None
        att = ctx.attention
        kv = tuple(part for b in context_blocks(decoder) for part in b.context_kv(att))
        inputs = (x, t, ctx.cond_emb, kv) + (() if att.mask is None else (att.mask,))
        key = ("decoder", id(decoder), decoder.dtype)
        return cache.call(key, lambda: _DecoderStep(decoder), inputs,
                          lambda: decoder.denoise(x, t, ctx))  # fmt: skip
    return decoder.denoise(x, t, ctx)


class _UpsamplerStep(nn.Module):
    """UpsamplerNet.forward with low_res as a positional input."""

    def __init__(self, net: UpsamplerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, t: Tensor, low_res: Tensor) -> Tensor:
        return self.net(x, t, low_res=low_res)


def upsample(
    cache: GraphCache | None, net: UpsamplerNet, x: Tensor, t: Tensor, low_res: Tensor
) -> Tensor:
    """net(x, t, low_res=low_res), as a frozen graph where `usable`."""
    if usable(cache, x):
        assert cache is not None
        key = ("upsampler", id(net), net.dtype)
        return cache.call(key, lambda: _UpsamplerStep(net), (x, t, low_res),
                          lambda: net(x, t, low_res=low_res))  # fmt: skip
    return net(x, t, low_res=low_res)
