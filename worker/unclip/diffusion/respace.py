"""Respacing a trained diffusion to fewer steps (Nichol & Dhariwal 2021, s4)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from worker.unclip.diffusion.gaussian_diffusion import GaussianDiffusion

SPEC_FORMS = "an int N, 'N', 'a,b,c' (steps per equal section), 'ddimN' or 'trailingN'"


def space_timesteps(num_timesteps: int, spec: int | str) -> list[int]:
    """Original timesteps (ascending) to keep: guided-diffusion sections, DDIM stride, trailing.

    - N or "N": N steps spread evenly over [0, T-1], both ends included.
    - "a,b,c": split [0, T) into equal sections with a, b, c evenly spread steps each.
    - "ddimN": stride T // N from 0 (Song et al. 2021).
    - "trailingN": N steps ending at T-1 (Lin et al. 2023, table 2): best for few steps.
    """
    if isinstance(spec, int):
        return _sections(num_timesteps, [spec])
    text = spec.strip()
    if text.startswith("ddim"):
        return _ddim(num_timesteps, _parse_count(text[4:], spec))
    if text.startswith("trailing"):
        return _trailing(num_timesteps, _parse_count(text[8:], spec))
    return _sections(num_timesteps, [_parse_count(part, spec) for part in text.split(",")])


def _parse_count(text: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"bad timestep spacing {spec!r}; allowed: {SPEC_FORMS}") from None


def _check_count(num_timesteps: int, count: int, spec: str) -> None:
    if not 1 <= count <= num_timesteps:
        raise ValueError(
            f"cannot take {count} steps from {num_timesteps} ({spec}); allowed 1..{num_timesteps}"
        )


def _ddim(num_timesteps: int, count: int) -> list[int]:
    _check_count(num_timesteps, count, f"ddim{count}")
    stride = num_timesteps // count
    return list(range(0, stride * count, stride))


def _trailing(num_timesteps: int, count: int) -> list[int]:
    _check_count(num_timesteps, count, f"trailing{count}")
    steps = np.round(np.arange(num_timesteps, 0, -num_timesteps / count)).astype(np.int64) - 1
    return sorted({int(s) for s in steps})


def _sections(num_timesteps: int, counts: list[int]) -> list[int]:
    size_per, extra = divmod(num_timesteps, len(counts))
    kept: list[int] = []
    start = 0
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        _check_count(size, count, f"section {i} of {counts}")
        stride = (size - 1) / (count - 1) if count > 1 else 0.0
        kept.extend(start + round(stride * j) for j in range(count))
        start += size
    return kept


def respace(diffusion: GaussianDiffusion, use_timesteps: Iterable[int]) -> GaussianDiffusion:
    """A diffusion over the kept steps only; its timestep_map gives the original timesteps."""
    kept = sorted(set(int(t) for t in use_timesteps))
    if not kept or kept[0] < 0 or kept[-1] >= diffusion.num_timesteps:
        raise ValueError(
            f"timesteps to keep must be a non-empty subset of 0..{diffusion.num_timesteps - 1}, "
            f"got {kept[:5]}{'...' if len(kept) > 5 else ''}"
        )
    acp = diffusion.alphas_cumprod[kept]
    betas = 1.0 - acp / np.append(1.0, acp[:-1])
    return GaussianDiffusion(
        betas,
        prediction=diffusion.prediction,
        variance=diffusion.variance,
        timestep_map=[diffusion.timestep_map[t] for t in kept],
    )


def respaced(diffusion: GaussianDiffusion, spec: int | str) -> GaussianDiffusion:
    """respace(diffusion, space_timesteps(diffusion.num_timesteps, spec))."""
    return respace(diffusion, space_timesteps(diffusion.num_timesteps, spec))
