"""Frozen graphs of the UNet calls: the same CPU kernels as eager, without Python's cost per op.

The decoder and upsampler are small UNets whose eager calls spend a good part of their CPU
time in Python and module dispatch between ~300 small kernels. A `torch.jit.trace` of one
network call, frozen (`torch.jit.freeze`: weights and attributes become constants), runs
the same aten kernels in the same order from TorchScript's executor: outputs equal the
eager call's bit for bit (tests/worker/unclip/test_frozen_graphs.py), and a call costs
10-25% less CPU (docs/benchmarks.md, issue 11). `torch.jit.optimize_for_inference`
(oneDNN-prepacked convolutions) and TorchScript's static runtime were measured slower here.

A trace holds for one set of input shapes, so graphs are cached per (network, shapes,
dtypes, strides), most recently used first, and traced on first use (about 0.5-1 CPU s
each). They are used only where they change nothing: CPU tensors, no autograd, and
batch-invariant mode off (its chunked layers decide per call in Python, which a trace would
bake in). A lock makes the cache safe for concurrent renders in threads; a frozen graph
itself may run in several threads at once. Python-level module hooks and patched methods
do not run inside a graph: switch `Family.frozen_graphs` off to observe calls. TorchScript
is deprecated in torch 2.x: should tracing fail, the call runs eagerly.
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
    """Frozen traces of network calls, keyed by (name, input signature), thread-safe."""

    def __init__(self, max_graphs: int = MAX_GRAPHS) -> None:
        self.max_graphs = max_graphs
        self._graphs: OrderedDict[Hashable, torch.jit.ScriptModule | None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._graphs)

    def call(
        self, name: Hashable, build: Callable[[], nn.Module], inputs: tuple[Any, ...]
    ) -> Tensor | None:
        """The frozen graph of build() run on `inputs`; None where tracing failed (run eager)."""
        key = (name, _signature(inputs))
        with self._lock:
            if key in self._graphs:
                self._graphs.move_to_end(key)
                graph = self._graphs[key]
            else:
                graph = self._graphs[key] = _freeze(build(), inputs)
                while len(self._graphs) > self.max_graphs:
                    self._graphs.popitem(last=False)
        return None if graph is None else graph(*inputs)


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
        out = cache.call(key, lambda: _DecoderStep(decoder), inputs)
        if out is not None:
            return out
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
        out = cache.call(key, lambda: _UpsamplerStep(net), (x, t, low_res))
        if out is not None:
            return out
    return net(x, t, low_res=low_res)
