"""Per-request, per-stage, per-image random generators, so batching never changes an image."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_MASK_63 = (1 << 63) - 1


def derive_seed(seed: int, stage: str, index: int, candidate: int = 0) -> int:
    """A 63-bit seed that depends only on (seed, stage, image index, candidate)."""
    key = f"{seed}:{stage}:{index}:{candidate}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK_63


def make_generator(
    seed: int, stage: str, index: int, device: torch.device | str, candidate: int = 0
) -> torch.Generator:
    """A torch.Generator on `device` seeded from (seed, stage, index, candidate)."""
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed(derive_seed(seed, stage, index, candidate))
    return generator


# CPU kernels pick their algorithm by problem size: a matrix product's rows, or a
# convolution of one image (or of 16 and more with a bias), give results that differ in the
# last bits from the same rows inside another batch. Measured on this project's machines: a
# product with fewer than 4 rows differs from the same rows among more (AMD EPYC), and on an
# Intel Xeon a 4-row product differs from the same rows among 8. So products run in chunks
# whose size depends only on the input's shape past the batch dimension: one batch item per
# call when an item has 4 rows or more (token sequences), otherwise 4 rows padded with zeros;
# convolutions run one image at a time for large feature maps (no padded work where
# convolutions cost most) and in padded pairs for small ones (where one call per image would
# cost more than the padding).
_MIN_ROWS = 4
_SMALL_MAP = 1024  # positions (32 x 32) below which a feature map counts as small
_SMALL_CHUNK = 2


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([x, x.new_zeros(rows - x.shape[0], *x.shape[1:])])


def _in_chunks(
    flat: torch.Tensor, chunk: int, product: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """product(rows) over `flat` (M, K) in calls of exactly `chunk` rows (the last padded)."""
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
    return per_item if per_item >= _MIN_ROWS else _MIN_ROWS


def stable_linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """layer(x) with every CPU call the same shape whatever the batch (see above)."""
    if x.device.type != "cpu" or x.dim() < 2:
        return F.linear(x, layer.weight, layer.bias)
    flat = x.reshape(-1, x.shape[-1])
    out = _in_chunks(flat, _chunk_rows(x), lambda rows: F.linear(rows, layer.weight, layer.bias))
    return out.reshape(*x.shape[:-1], out.shape[-1])


def stable_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (M, K) @ weight (K, N) in CPU calls of 4 rows."""
    if x.device.type != "cpu":
        return x @ weight
    return _in_chunks(x, _MIN_ROWS, lambda rows: rows @ weight)


def stable_conv(
    conv: nn.Conv1d | nn.Conv2d, x: torch.Tensor, small_map: int = _SMALL_MAP
) -> torch.Tensor:
    """conv(x) in chunks whose size depends only on the layer's input shape (on the CPU).

    Maps of fewer than `small_map` positions go in padded pairs, larger ones one by one.
    """
    if x.device.type != "cpu":
        return conv._conv_forward(x, conv.weight, conv.bias)
    chunk = 1 if x[0, 0].numel() >= small_map else _SMALL_CHUNK
    if x.shape[0] == chunk:
        return conv._conv_forward(x, conv.weight, conv.bias)
    outs = []
    for part in x.split(chunk):
        padded = part if part.shape[0] == chunk else _pad_rows(part, chunk)
        outs.append(conv._conv_forward(padded, conv.weight, conv.bias)[: part.shape[0]])
    return torch.cat(outs)


def _per_item(forward: Callable[..., Any], x: torch.Tensor, dim: int,
              run: Callable[[int], Any]) -> Any:
    """Outputs of run(i) for every item i along `dim`, concatenated (tuples element-wise)."""
    outs = [run(i) for i in range(x.shape[dim])]
    if isinstance(outs[0], tuple):
        return tuple(
            None if parts[0] is None else torch.cat(parts, dim=dim if j == 0 else 0)
            for j, parts in enumerate(zip(*outs, strict=True))
        )
    return torch.cat(outs, dim=dim)


def stable_attention(layer: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor,
                     value: torch.Tensor, key_padding_mask: torch.Tensor | None = None,
                     need_weights: bool = True, attn_mask: torch.Tensor | None = None,
                     **kwargs: Any) -> Any:
    """nn.MultiheadAttention one batch item at a time on the CPU: its projections run
    inside torch's functional attention, out of reach of the patched Linear layers."""
    original = type(layer).forward
    dim = 0 if layer.batch_first else 1
    if query.device.type != "cpu" or query.dim() != 3 or (
        attn_mask is not None and attn_mask.dim() != 2
    ):
        return original(layer, query, key, value, key_padding_mask=key_padding_mask,
                        need_weights=need_weights, attn_mask=attn_mask, **kwargs)

    def run(i: int) -> Any:
        mask = None if key_padding_mask is None else key_padding_mask[i : i + 1]
        return original(layer, query.narrow(dim, i, 1), key.narrow(dim, i, 1),
                        value.narrow(dim, i, 1), key_padding_mask=mask,
                        need_weights=need_weights, attn_mask=attn_mask, **kwargs)

    return _per_item(original, query, dim, run)


def stable_per_image(layer: nn.Module, x: torch.Tensor) -> Any:
    """layer(x) one image at a time on the CPU (modules that call functional attention
    themselves, such as open_clip's AttentionPool2d)."""
    original = type(layer).forward
    if x.device.type != "cpu" or x.shape[0] == 1:
        return original(layer, x)
    return _per_item(original, x, 0, lambda i: original(layer, x[i : i + 1]))


# Modules whose own forward calls torch's functional attention with their weights.
_PER_IMAGE_MODULES = ("AttentionPool2d",)


def batch_invariant(device: torch.device | str) -> bool:
    """Whether `row_stable` makes a row's numbers independent of its batch on `device`: on
    the CPU it does; elsewhere its layers fall back to the plain kernels."""
    return torch.device(device).type == "cpu"


@contextmanager
def row_stable(modules: Iterable[nn.Module], *, small_map: int = _SMALL_MAP) -> Iterator[None]:
    """Within this block a row's CPU results from `modules` do not depend on its batch.

    Every Linear and Conv1d/Conv2d inside gets a batch-stable forward for the block's
    duration (nested blocks leave the outer one's in place). Convolutions of maps below
    `small_map` positions run in padded pairs: pass a larger value where rows come in
    pairs anyway (guided [cond; uncond] batches), so that pairs cost no padding and save
    the per-image calls.
    """
    installed: list[nn.Module] = []
    for module in modules:
        for layer in module.modules():
            if "forward" in layer.__dict__:
                continue
            if isinstance(layer, nn.MultiheadAttention):
                layer.forward = functools.partial(stable_attention, layer)  # type: ignore[method-assign]
            elif type(layer).__name__ in _PER_IMAGE_MODULES:
                layer.forward = functools.partial(stable_per_image, layer)
            elif isinstance(layer, nn.Linear):
                layer.forward = functools.partial(stable_linear, layer)  # type: ignore[method-assign]
            elif isinstance(layer, nn.Conv1d | nn.Conv2d) and layer.padding_mode == "zeros":
                layer.forward = functools.partial(  # type: ignore[method-assign]
                    stable_conv, layer, small_map=small_map
                )
            else:
                continue
            installed.append(layer)
    try:
        yield
    finally:
        for layer in installed:
            del layer.forward
