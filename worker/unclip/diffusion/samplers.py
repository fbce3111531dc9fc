"""Samplers with one signature: DDPM ancestral, DDIM and DPM-Solver++(2M).

Which to use:
- "ddim" (eta 0, the default everywhere): deterministic given the start noise, good from ~10
  steps; use "trailingN" respacing for few steps. The default for every stage.
- "dpmpp_2m": a second-order multistep solver; the best samples at 10-20 steps, for x0- and
  eps-prediction nets alike and with classifier-free guidance (order 2 is the stable choice
  there, Lu et al. 2022). Only the model's mean is used: learned variance channels are ignored.
- "ddpm": ancestral sampling with the model's variance (fixed or learned-range). Needs more
  steps (25+ for a learned-range net, as Karlo's decoder and upsampler, far more for fixed
  variance) but is the sampler the stages were trained for and the most faithful at many steps.

The contract (k-diffusion style: one signature, the schedule lives in `diffusion`):

    sample_<name>(model_fn, x, diffusion, *, generators, callback=None, clip_x0=1.0,
                  inpaint=None) -> Tensor

- model_fn(x_t, t) -> raw net output, where x_t is (B, ...) and t a (B,) long tensor of
  *original* timesteps (diffusion.timestep_map of the respaced index). It returns eps or x0
  (diffusion.prediction); for variance "learned_range" the variance values in [-1, 1] are
  concatenated on dim 1 ((B, 2C, ...)). A classifier-free guided model_fn runs the net on
  [cond; uncond] in one call, guides the prediction channels only
  (uncond + s * (cond - uncond)) and passes through the variance channels of the conditional
  half, so that scale 1 equals the conditional net.
- x: the start noise at the last timestep, e.g. randn_rows(shape, generators, device, dtype).
  Keep x in float32 and cast inside model_fn for a bf16/fp16 net: the update arithmetic runs in
  x's dtype and the schedule coefficients are float64 Python floats.
- diffusion: the (respaced) GaussianDiffusion; its indices are visited last to first, one model
  call per step.
- generators: one torch.Generator per batch row; all noise for row i comes from generators[i],
  so a row gives the same result alone or in a batch.
- callback(StepInfo) after each step; an exception it raises propagates at once (cancellation).
- clip_x0: clamp the predicted x0 to [-c, c]; None for no clamp.
- inpaint: after each step the known region (keep == 1) is replaced by q_sample(known, t_next)
  with per-row noise, and by `known` exactly after the last step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

import torch
from torch import Tensor

from worker.unclip.diffusion.gaussian_diffusion import GaussianDiffusion

ModelFn = Callable[[Tensor, Tensor], Tensor]
SamplerName = Literal["ddpm", "ddim", "dpmpp_2m"]
SAMPLER_NAMES: tuple[str, ...] = get_args(SamplerName)


@dataclass(frozen=True)
class StepInfo:
    """Progress after one step: step counts from 1 to total; t is the original timestep."""

    step: int
    total: int
    t: int
    x: Tensor  # the sample after this step
    x0_pred: Tensor  # the (clamped) x0 the model predicted at this step


StepCallback = Callable[[StepInfo], None]


@dataclass(frozen=True)
class Inpaint:
    """Known pixels (B, C, H, W) and where to keep them (B, 1, H, W), 1 = keep, 0 = repaint."""

    known: Tensor
    keep: Tensor


class Sampler(Protocol):
    """The one signature every sampler has."""

    def __call__(
        self,
        model_fn: ModelFn,
        x: Tensor,
        diffusion: GaussianDiffusion,
        *,
        generators: Sequence[torch.Generator],
        callback: StepCallback | None = None,
        clip_x0: float | None = 1.0,
        inpaint: Inpaint | None = None,
    ) -> Tensor: ...


# (index i, x at i, raw model output at i) -> (x at i - 1, the x0 prediction at i).
_Update = Callable[[int, Tensor, Tensor], tuple[Tensor, Tensor]]


def randn_rows(
    shape: Sequence[int],
    generators: Sequence[torch.Generator],
    device: torch.device | str,
    dtype: torch.dtype,
) -> Tensor:
    """Standard normal (B, ...) with row i drawn from generators[i] on that generator's device.

    Noise is drawn in float32 and then cast, so a seed gives the same noise in every dtype;
    CPU generators also give the same noise on every device (drawn on the CPU, then moved).
    """
    if len(generators) != shape[0]:
        raise ValueError(f"got {len(generators)} generators for a batch of {shape[0]} rows")
    rows = [
        torch.randn(tuple(shape[1:]), generator=g, device=g.device, dtype=torch.float32)
        for g in generators
    ]
    if len({r.device for r in rows}) == 1:
        return torch.stack(rows).to(device=device, dtype=dtype)
    return torch.stack([r.to(device) for r in rows]).to(dtype=dtype)


def _check_inputs(
    x: Tensor, generators: Sequence[torch.Generator], inpaint: Inpaint | None
) -> None:
    if len(generators) != x.shape[0]:
        raise ValueError(f"got {len(generators)} generators for a batch of {x.shape[0]} rows")
    if inpaint is None:
        return
    keep_shape = (x.shape[0], 1, *x.shape[2:])
    if tuple(inpaint.known.shape) != tuple(x.shape) or tuple(inpaint.keep.shape) != keep_shape:
        raise ValueError(
            f"inpaint known {tuple(inpaint.known.shape)} / keep {tuple(inpaint.keep.shape)} must "
            f"be {tuple(x.shape)} / {keep_shape} for x {tuple(x.shape)}"
        )


def _force_known(
    diffusion: GaussianDiffusion,
    inpaint: Inpaint,
    x: Tensor,
    t_next: int,
    generators: Sequence[torch.Generator],
) -> Tensor:
    """Known region := q_sample(known, t_next), or known itself after the last step."""
    keep = inpaint.keep.to(x.dtype)
    if t_next < 0:
        target = inpaint.known.to(x.dtype)
    else:
        noise = randn_rows(x.shape, generators, x.device, x.dtype)
        target = diffusion.q_sample(inpaint.known.to(x.dtype), t_next, noise)
    return keep * target + (1.0 - keep) * x


def _sample_loop(
    model_fn: ModelFn,
    x: Tensor,
    diffusion: GaussianDiffusion,
    update: _Update,
    *,
    generators: Sequence[torch.Generator],
    callback: StepCallback | None,
    inpaint: Inpaint | None,
) -> Tensor:
    """The loop all samplers share: one model call and one update per step, last to first."""
    _check_inputs(x, generators, inpaint)
    total = diffusion.num_timesteps
    for step, i in enumerate(range(total - 1, -1, -1), start=1):
        t_model = diffusion.timestep_map[i]
        t_batch = torch.full((x.shape[0],), t_model, dtype=torch.long, device=x.device)
        x, x0 = update(i, x, model_fn(x, t_batch))
        if inpaint is not None:
            x = _force_known(diffusion, inpaint, x, i - 1, generators)
        if callback is not None:
            callback(StepInfo(step=step, total=total, t=t_model, x=x, x0_pred=x0))
    return x


def sample_ddpm(
    model_fn: ModelFn,
    x: Tensor,
    diffusion: GaussianDiffusion,
    *,
    generators: Sequence[torch.Generator],
    callback: StepCallback | None = None,
    clip_x0: float | None = 1.0,
    inpaint: Inpaint | None = None,
) -> Tensor:
    """Ancestral sampling x_{t-1} ~ p(x_{t-1} | x_t) (Ho et al. 2020, alg. 2; learned variance)."""

    def update(i: int, x_t: Tensor, output: Tensor) -> tuple[Tensor, Tensor]:
        out = diffusion.p_mean_variance(output, x_t, i, clip_x0=clip_x0)
        if i == 0:  # the posterior mean at the first step is x0 itself (abar_prev = 1)
            return out.x0, out.x0
        noise = randn_rows(x_t.shape, generators, x_t.device, x_t.dtype)
        log_var = out.log_variance
        std = math.exp(0.5 * log_var) if isinstance(log_var, float) else torch.exp(0.5 * log_var)
        return out.mean + std * noise, out.x0

    return _sample_loop(
        model_fn,
        x,
        diffusion,
        update,
        generators=generators,
        callback=callback,
        inpaint=inpaint,
    )


def sample_ddim(
    model_fn: ModelFn,
    x: Tensor,
    diffusion: GaussianDiffusion,
    *,
    generators: Sequence[torch.Generator],
    callback: StepCallback | None = None,
    clip_x0: float | None = 1.0,
    inpaint: Inpaint | None = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12); eta 0 is deterministic, eta 1 is DDPM-like."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")

    def update(i: int, x_t: Tensor, output: Tensor) -> tuple[Tensor, Tensor]:
        x0, eps = diffusion.predict_x0_eps(output, x_t, i, clip_x0=clip_x0)
        abar = float(diffusion.alphas_cumprod[i])
        abar_prev = float(diffusion.alphas_cumprod_prev[i])
        sigma = eta * math.sqrt((1.0 - abar_prev) / (1.0 - abar) * (1.0 - abar / abar_prev))
        x_prev = x0 * math.sqrt(abar_prev) + math.sqrt(max(1.0 - abar_prev - sigma**2, 0.0)) * eps
        if sigma > 0 and i > 0:
            x_prev = x_prev + sigma * randn_rows(x_t.shape, generators, x_t.device, x_t.dtype)
        return x_prev, x0

    return _sample_loop(
        model_fn,
        x,
        diffusion,
        update,
        generators=generators,
        callback=callback,
        inpaint=inpaint,
    )


def sample_dpmpp_2m(
    model_fn: ModelFn,
    x: Tensor,
    diffusion: GaussianDiffusion,
    *,
    generators: Sequence[torch.Generator],
    callback: StepCallback | None = None,
    clip_x0: float | None = 1.0,
    inpaint: Inpaint | None = None,
) -> Tensor:
    """DPM-Solver++(2M), data prediction, multistep order 2 (Lu et al. 2022, alg. 2)."""
    acp = diffusion.alphas_cumprod
    history: list[tuple[Tensor, float]] = []  # (previous x0, previous step size h)

    def update(i: int, x_t: Tensor, output: Tensor) -> tuple[Tensor, Tensor]:
        x0 = diffusion.predict_x0(output, x_t, i, clip_x0=clip_x0)
        if i == 0:  # to sigma = 0: the solution is the data prediction itself
            return x0, x0
        alpha_s, sigma_s = math.sqrt(acp[i]), math.sqrt(1.0 - acp[i])
        alpha_t, sigma_t = math.sqrt(acp[i - 1]), math.sqrt(1.0 - acp[i - 1])
        h = math.log(alpha_t / sigma_t) - math.log(alpha_s / sigma_s)
        data = x0
        if history:
            x0_prev, h_prev = history[-1]
            r = h_prev / h
            data = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
        history[:] = [(x0, h)]
        return (sigma_t / sigma_s) * x_t - alpha_t * math.expm1(-h) * data, x0

    return _sample_loop(
        model_fn,
        x,
        diffusion,
        update,
        generators=generators,
        callback=callback,
        inpaint=inpaint,
    )


SAMPLERS: dict[str, Sampler] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "dpmpp_2m": sample_dpmpp_2m,
}


def get_sampler(name: SamplerName | str) -> Sampler:
    """The sampler function registered under `name`."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLER_NAMES)}") from None
