"""Batch-invariant (reproducible) mode: a row's CPU results independent of its batch, on request.

CPU kernels pick their algorithm by problem size: a matrix product's rows, or a convolution
of one image (or of 16 and more with a bias), give results that differ in the last bits from
the same rows inside another batch. Measured on this project's machines: a product with fewer
than 4 rows differs from the same rows among more (AMD EPYC), and on an Intel Xeon a 4-row
product differs from the same rows among 8. In batch-invariant mode products therefore run in
chunks whose size depends only on the input's shape past the batch dimension (one batch item
per call when an item has 4 rows or more, otherwise 4 rows padded with zeros), convolutions
one image at a time for large feature maps and in padded pairs for small ones, and attention
modules that project inside torch's functional attention one item at a time. GroupNorm
(`group_norm`, called by the networks' own norm layers) runs one image at a time.

The mechanism is installed once per family (`install`, which Family does on construction):
every Linear, Conv1d/Conv2d, nn.MultiheadAttention and open_clip AttentionPool2d of its
networks becomes a subclass whose forward reads the calling thread's mode (a ContextVar set
by `batch_invariance`) and runs either the plain kernel or the chunked one. Nothing is
patched per call, so concurrent renders in threads (the worker's `--pool threads`) never see
each other's mode; the default (mode off) runs the plain kernels at full speed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MIN_ROWS = 4
SMALL_MAP = 1024  # positions (32 x 32) below which a feature map counts as small
SMALL_CHUNK = 2


@dataclass(frozen=True)
class Mode:
    """Batch-invariant mode's settings: convolutions of maps below `small_map` positions run
    in padded pairs, larger ones image by image."""

    small_map: int = SMALL_MAP


_MODE: ContextVar[Mode | None] = ContextVar("unclip_batch_invariance", default=None)


@contextmanager
def batch_invariance(on: bool, *, small_map: int = SMALL_MAP) -> Iterator[None]:
    """Within this block (in this thread only) installed layers run batch-invariantly if `on`.

    Pass a larger `small_map` where rows come in pairs anyway (guided [cond; uncond]
    batches): pairs then cost no padding and save the per-image calls.
    """
    token = _MODE.set(Mode(small_map) if on else None)
    try:
        yield
    finally:
        _MODE.reset(token)


def current_mode() -> Mode | None:
    """The calling thread's batch-invariant mode, None when off."""
    return _MODE.get()


def batch_invariant(device: torch.device | str, reproducible: bool) -> bool:
    """Whether a render in `reproducible` mode on `device` gives rows independent of their
    batch: on the CPU it does; elsewhere the layers keep the device's own kernels."""
    return reproducible and torch.device(device).type == "cpu"


def _mode_for(x: torch.Tensor) -> Mode | None:
    mode = _MODE.get()
    return mode if mode is not None and x.device.type == "cpu" else None


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([x, x.new_zeros(rows - x.shape[0], *x.shape[1:])])


def _in_chunks(
    flat: torch.Tensor, chunk: int, product: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """product(rows) over `flat` (M, ...) in calls of exactly `chunk` rows (the last padded)."""
    if flat.shape[0] == chunk:
        return product(flat)
    outs = []
    for part in flat.split(chunk):
        padded = part if part.shape[0] == chunk else _pad_rows(part, chunk)
        outs.append(product(padded)[: part.shape[0]])
    return torch.cat(outs)


def _chunk_rows(x: torch.Tensor) -> int:
    """Rows per call for x (..., K): one batch item when it has >= 4 rows, else 4."""
    per_item = 1
    for size in x.shape[1:-1]:
        per_item *= size
    return per_item if per_item >= MIN_ROWS else MIN_ROWS


def stable_linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """layer(x) with every CPU call the same shape whatever the batch."""
    if x.device.type != "cpu" or x.dim() < 2:
        return F.linear(x, layer.weight, layer.bias)
    flat = x.reshape(-1, x.shape[-1])
    out = _in_chunks(flat, _chunk_rows(x), lambda rows: F.linear(rows, layer.weight, layer.bias))
    return out.reshape(*x.shape[:-1], out.shape[-1])


def matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (M, K) @ weight (K, N); in CPU calls of 4 rows when the thread's mode is on."""
    if _mode_for(x) is None:
        return x @ weight
    return _in_chunks(x, MIN_ROWS, lambda rows: rows @ weight)


def group_norm(
    x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
    eps: float,
) -> torch.Tensor:  # fmt: skip
    """F.group_norm; one image at a time on the CPU when the thread's mode is on.

    PyTorch's CPU kernel for channels-last maps splits an image's statistics across threads
    when there are few images, so with more than one thread an image's result depends on its
    batch (measured: up to 6e-6 at 2 threads; NCHW maps and one thread give equal bits).
    """
    if _mode_for(x) is None or x.shape[0] == 1:
        return F.group_norm(x, groups, weight, bias, eps)
    return torch.cat([F.group_norm(x[i : i + 1], groups, weight, bias, eps) for i in range(len(x))])


def stable_conv(
    conv: nn.Conv1d | nn.Conv2d, x: torch.Tensor, small_map: int = SMALL_MAP
) -> torch.Tensor:
    """conv(x) in chunks whose size depends only on the layer's input shape (on the CPU).

    Maps of fewer than `small_map` positions go in padded pairs, larger ones one by one.
    """
    if x.device.type != "cpu":
        return conv._conv_forward(x, conv.weight, conv.bias)
    chunk = 1 if x[0, 0].numel() >= small_map else SMALL_CHUNK
    return _in_chunks(x, chunk, lambda part: conv._conv_forward(part, conv.weight, conv.bias))


def _per_item(x: torch.Tensor, dim: int, run: Callable[[int], Any]) -> Any:
    """Outputs of run(i) for every item i along `dim`, concatenated (tuples element-wise)."""
    outs = [run(i) for i in range(x.shape[dim])]
    if isinstance(outs[0], tuple):
        return tuple(
            None if parts[0] is None else torch.cat(parts, dim=dim if j == 0 else 0)
            for j, parts in enumerate(zip(*outs, strict=True))
        )
    return torch.cat(outs, dim=dim)


class InvariantLinear(nn.Linear):
    """nn.Linear that runs `stable_linear` in batch-invariant mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _mode_for(x) is None:
            return F.linear(x, self.weight, self.bias)
        return stable_linear(self, x)


class InvariantConv1d(nn.Conv1d):
    """nn.Conv1d that runs `stable_conv` in batch-invariant mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = _mode_for(x)
        if mode is None:
            return self._conv_forward(x, self.weight, self.bias)
        return stable_conv(self, x, mode.small_map)


class InvariantConv2d(nn.Conv2d):
    """nn.Conv2d that runs `stable_conv` in batch-invariant mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = _mode_for(x)
        if mode is None:
            return self._conv_forward(x, self.weight, self.bias)
        return stable_conv(self, x, mode.small_map)


class InvariantMultiheadAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention one batch item at a time in batch-invariant mode: its
    projections run inside torch's functional attention, out of reach of InvariantLinear."""

    def forward(  # type: ignore[override]
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        plain = super().forward
        if (
            _mode_for(query) is None
            or query.dim() != 3
            or (attn_mask is not None and attn_mask.dim() != 2)
        ):
            return plain(query, key, value, key_padding_mask=key_padding_mask,
                         need_weights=need_weights, attn_mask=attn_mask, **kwargs)  # fmt: skip
        dim = 0 if self.batch_first else 1

        def run(i: int) -> Any:
            mask = None if key_padding_mask is None else key_padding_mask[i : i + 1]
            return plain(query.narrow(dim, i, 1), key.narrow(dim, i, 1), value.narrow(dim, i, 1),
                         key_padding_mask=mask, need_weights=need_weights, attn_mask=attn_mask,
                         **kwargs)  # fmt: skip

        return _per_item(query, dim, run)


def _per_image_forward(self: nn.Module, x: torch.Tensor) -> Any:
    """forward of modules that call functional attention with their own weights (open_clip's
    AttentionPool2d): one image at a time in batch-invariant mode."""
    plain = super(type(self), self).forward  # type: ignore[misc]  # the wrapped class's
    if _mode_for(x) is None or x.shape[0] == 1:
        return plain(x)
    return _per_item(x, 0, lambda i: plain(x[i : i + 1]))


# Modules whose own forward calls torch's functional attention with their weights.
PER_IMAGE_MODULES = ("AttentionPool2d",)
_PLAIN: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: InvariantLinear,
    nn.Conv1d: InvariantConv1d,
    nn.Conv2d: InvariantConv2d,
    nn.MultiheadAttention: InvariantMultiheadAttention,
}
_SWITCHABLE = (*_PLAIN.values(),)
_made: dict[type[nn.Module], type[nn.Module]] = {}


def _switchable_class(layer: nn.Module) -> type[nn.Module] | None:
    """The switchable subclass of `layer`'s class; None for layers it leaves alone."""
    cls = type(layer)
    if cls in _PLAIN:
        if isinstance(layer, nn.Conv1d | nn.Conv2d) and layer.padding_mode != "zeros":
            return None
        return _PLAIN[cls]
    if cls.__name__ in PER_IMAGE_MODULES:
        if cls not in _made:
            _made[cls] = type(f"Invariant{cls.__name__}", (cls,), {"forward": _per_image_forward})
        return _made[cls]
    return None


def install(modules: Iterable[nn.Module]) -> None:
    """Make every supported layer of `modules` switchable, once (idempotent, same weights).

    Only layers of exactly nn.Linear, nn.Conv1d, nn.Conv2d, nn.MultiheadAttention (or a
    PER_IMAGE_MODULES class) change class; subclasses with their own forward, such as the
    out_proj Linear inside nn.MultiheadAttention, are left as they are.
    """
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, _SWITCHABLE) or type(layer) in _made.values():
                continue
            switchable = _switchable_class(layer)
            if switchable is not None:
                layer.__class__ = switchable
