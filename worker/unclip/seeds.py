"""Per-request, per-stage, per-image random generators, so batching never changes the noise."""

from __future__ import annotations

import hashlib

import torch

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
