"""Per-request, per-stage, per-image random generators, so batching never changes an image."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

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


# CPU kernels pick their algorithm by problem size: a matrix product with fewer than 4 rows,
# or a convolution of one image (or of 16 and more with a bias), gives results that differ in
# the last bits from the same rows inside another batch. So small products are padded to 4
# rows and convolutions run in chunks of a size fixed by the layer's input shape alone: one
# image at a time for large feature maps (no padded work where convolutions cost most) and
# padded pairs for small ones (where one call per image would cost more than the padding).
_MIN_ROWS = 4
_SMALL_MAP = 1024  # positions (32 x 32) below which a feature map counts as small
_SMALL_CHUNK = 2


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    return torch.cat([x, x.new_zeros(rows - x.shape[0], *x.shape[1:])])


def stable_linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """layer(x) with fewer than 4 rows padded to 4."""
    flat = x.reshape(-1, x.shape[-1])
    if flat.shape[0] >= _MIN_ROWS or x.device.type != "cpu":
        return F.linear(x, layer.weight, layer.bias)
    out = F.linear(_pad_rows(flat, _MIN_ROWS), layer.weight, layer.bias)
    return out[: flat.shape[0]].reshape(*x.shape[:-1], out.shape[-1])


def stable_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (M, K) @ weight (K, N) with fewer than 4 CPU rows padded to 4."""
    if x.shape[0] >= _MIN_ROWS or x.device.type != "cpu":
        return x @ weight
    return (_pad_rows(x, _MIN_ROWS) @ weight)[: x.shape[0]]


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
            if isinstance(layer, nn.Linear):
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
