"""Respacing a trained diffusion to fewer steps (Nichol & Dhariwal 2021, s4)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

import numpy as np

from worker.unclip.diffusion.gaussian_diffusion import GaussianDiffusion

SPEC_FORMS = (
    "an int N, 'N', 'a,b,c' (steps per equal section), 'ddimN', 'leadingN', 'trailingN' or 'fast27'"
)
# How a family spreads a stage's N steps (FamilyDefaults.spacing): the spec each kind names.
SpacingKind = Literal["linspace", "leading", "trailing", "ddim", "fast27"]
SPACING_KINDS: tuple[str, ...] = get_args(SpacingKind)
FAST27_SECTIONS = "10,10,3,2,2"  # GLIDE's and Karlo's "fast27", before its last-step swap


def spacing_spec(kind: SpacingKind | str, steps: int) -> int | str:
    """The space_timesteps spec of `steps` steps spread the `kind` way."""
    if kind == "fast27":
        if steps != 27:
            raise ValueError(f"spacing 'fast27' takes exactly 27 steps, got {steps}")
        return "fast27"
    if kind == "linspace":
        return steps
    if kind in ("leading", "trailing", "ddim"):
        return f"{kind}{steps}"
    raise ValueError(f"unknown spacing {kind!r}; allowed: {', '.join(SPACING_KINDS)}")


def space_timesteps(num_timesteps: int, spec: int | str, *, start: int | None = None) -> list[int]:
    """Original timesteps (ascending) to keep: guided-diffusion sections, DDIM, leading, trailing.

    - N or "N": N steps spread evenly over [0, T-1], both ends included ("linspace").
    - "a,b,c": split [0, T) into equal sections with a, b, c evenly spread steps each.
    - "ddimN": the smallest integer stride from 0 giving exactly N steps, as in Karlo and
      guided-diffusion (Song et al. 2021); an error where no stride gives N.
    - "leadingN": stride T // N from 0 (diffusers' "leading"): never visits T-1.
    - "trailingN": N steps ending at T-1 (Lin et al. 2023, table 2): best for few steps.
    - "fast27": sections 10,10,3,2,2 with T-1 swapped for T-3 (GLIDE's and Karlo's 27 steps).

    start: the largest timestep to keep (default T-1): the spacing is that of a diffusion of
    start + 1 steps, so that a deterministic sampler of an eps net can skip the noisiest
    timesteps, where its x0 estimate divides the net's error by sqrt(alpha_bar) ~ 0.
    """
    if start is not None:
        if not 0 <= start < num_timesteps:
            raise ValueError(f"start must be in 0..{num_timesteps - 1}, got {start}")
        num_timesteps = start + 1
    if isinstance(spec, int):
        return _sections(num_timesteps, [spec])
    text = spec.strip()
    if text == "fast27":
        return _fast27(num_timesteps)
    for prefix, spread in (("ddim", _ddim), ("leading", _leading), ("trailing", _trailing)):
        if text.startswith(prefix):
            count = _parse_count(text[len(prefix) :], spec)
            _check_count(num_timesteps, count, text)
            return spread(num_timesteps, count)
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
    for stride in range(1, num_timesteps + 1):
        kept = list(range(0, num_timesteps, stride))
        if len(kept) == count:
            return kept
        if len(kept) < count:
            break
    raise ValueError(
        f"no integer stride takes exactly {count} steps from {num_timesteps} (ddim{count}); "
        f"use leading{count} (stride {num_timesteps // count}) or trailing{count}"
    )


def _leading(num_timesteps: int, count: int) -> list[int]:
    stride = num_timesteps // count
    return list(range(0, stride * count, stride))


def _trailing(num_timesteps: int, count: int) -> list[int]:
    steps = np.round(np.arange(num_timesteps, 0, -num_timesteps / count)).astype(np.int64) - 1
    return sorted({int(s) for s in steps})


def _fast27(num_timesteps: int) -> list[int]:
    if num_timesteps < 30:  # every section needs room, and T-3 must be new
        raise ValueError(f"fast27 needs at least 30 timesteps, got {num_timesteps}")
    kept = set(_sections(num_timesteps, [int(c) for c in FAST27_SECTIONS.split(",")]))
    kept.remove(num_timesteps - 1)  # "Help reduce DDIM artifacts from noisiest timesteps."
    kept.add(num_timesteps - 3)
    return sorted(kept)


def _sections(num_timesteps: int, counts: list[int]) -> list[int]:
    size_per, extra = divmod(num_timesteps, len(counts))
    kept: list[int] = []
    start = 0
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        _check_count(size, count, f"section {i} of {counts}")
        stride = (size - 1) / (count - 1) if count > 1 else 0.0
        position = 0.0
        for _ in range(count):  # an accumulated float stride, rounded: Karlo's exact steps
            kept.append(start + round(position))
            position += stride
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


def respaced(
    diffusion: GaussianDiffusion, spec: int | str, *, start: int | None = None
) -> GaussianDiffusion:
    """respace(diffusion, space_timesteps(diffusion.num_timesteps, spec, start=start))."""
    return respace(diffusion, space_timesteps(diffusion.num_timesteps, spec, start=start))
