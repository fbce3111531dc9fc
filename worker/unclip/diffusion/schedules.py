"""Named beta schedules for Gaussian diffusion, computed in float64."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

import numpy as np

ScheduleName = Literal["cosine", "linear"]
SCHEDULE_NAMES: tuple[str, ...] = get_args(ScheduleName)


def get_named_beta_schedule(name: ScheduleName | str, num_steps: int) -> np.ndarray:
    """Betas (num_steps,) float64 for a named schedule (Ho et al. 2020; Nichol & Dhariwal 2021)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if name == "linear":
        return linear_beta_schedule(num_steps)
    if name == "cosine":
        return cosine_beta_schedule(num_steps)
    raise ValueError(f"unknown beta schedule {name!r}; allowed: {', '.join(SCHEDULE_NAMES)}")


def linear_beta_schedule(num_steps: int) -> np.ndarray:
    """DDPM linear betas 1e-4..0.02 at 1000 steps, scaled by 1000/num_steps (Ho et al. 2020 s4)."""
    scale = 1000.0 / num_steps
    if scale * 0.02 >= 1.0:
        raise ValueError(
            f"linear schedule needs num_steps >= 21 (its last beta 0.02 * 1000 / num_steps must "
            f"stay below 1), got {num_steps}; use 'cosine' for fewer steps"
        )
    return np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)


def cosine_beta_schedule(num_steps: int, *, offset: float = 0.008) -> np.ndarray:
    """Cosine alpha_bar(t) = cos^2(((t+s)/(1+s)) pi/2) (Nichol & Dhariwal 2021, eq. 17)."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + offset) / (1.0 + offset) * math.pi / 2.0) ** 2

    return betas_for_alpha_bar(num_steps, alpha_bar, max_beta=0.999)


def betas_for_alpha_bar(
    num_steps: int, alpha_bar: Callable[[float], float], *, max_beta: float = 0.999
) -> np.ndarray:
    """beta_i = 1 - alpha_bar(t_{i+1}) / alpha_bar(t_i), clipped to max_beta (N&D 2021, s3.2)."""
    betas = [
        min(1.0 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
        for i in range(num_steps)
    ]
    return np.asarray(betas, dtype=np.float64)
