"""Gaussian diffusion: forward process, posterior and model mean/variance (Ho et al. 2020)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

import numpy as np
import torch
from torch import Tensor

from worker.unclip.diffusion.losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl
from worker.unclip.diffusion.schedules import ScheduleName, get_named_beta_schedule

Prediction = Literal["eps", "x0", "v"]  # v = sqrt(abar) eps - sqrt(1 - abar) x0
Variance = Literal["fixed_small", "fixed_large", "learned_range"]
PREDICTIONS: tuple[str, ...] = get_args(Prediction)
VARIANCES: tuple[str, ...] = get_args(Variance)
# A timestep index into this diffusion: a Python int (same for all rows, gathered on the host
# with no device work) or a (B,) long tensor (one per row, gathered on its device).
TimeIndex = int | Tensor
# model_fn(x_t, t_model, **model_kwargs) -> raw net output, used by training_losses.
TrainModelFn = Callable[..., Tensor]
# Improved DDPM (Nichol & Dhariwal 2021, s3.1): L_hybrid = L_simple + 0.001 * L_vb.
VB_LAMBDA = 0.001


@dataclass(frozen=True)
class Posterior:
    """q(x_{t-1} | x_t, x_0): mean, variance and clipped log variance."""

    mean: Tensor
    variance: Tensor | float
    log_variance: Tensor | float


@dataclass(frozen=True)
class PMeanVariance:
    """p(x_{t-1} | x_t) from one model output, with the x0 and eps it implies."""

    mean: Tensor
    variance: Tensor | float
    log_variance: Tensor | float
    x0: Tensor  # clamped when clip_x0 was given
    eps: Tensor  # consistent with the (clamped) x0


@dataclass(frozen=True)
class TrainingLosses:
    """Per-example losses (B,): mse, vb (bits/dim, 0 unless learned_range) and their sum."""

    mse: Tensor
    vb: Tensor
    loss: Tensor


class GaussianDiffusion:
    """Coefficients in float64 over num_timesteps steps, gathered into the working dtype."""

    def __init__(
        self,
        betas: np.ndarray | Sequence[float],
        *,
        prediction: Prediction,
        variance: Variance,
        timestep_map: Sequence[int] | None = None,
    ) -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(
                f"unknown prediction {prediction!r}; allowed: {', '.join(PREDICTIONS)}"
            )
        if variance not in VARIANCES:
            raise ValueError(f"unknown variance {variance!r}; allowed: {', '.join(VARIANCES)}")
        b = np.asarray(betas, dtype=np.float64)
        if b.ndim != 1 or len(b) == 0 or not ((b > 0).all() and (b <= 1).all()):
            raise ValueError(f"betas must be a non-empty 1-D array in (0, 1], got {b!r}")
        self.prediction: Prediction = prediction
        self.variance: Variance = variance
        self.num_timesteps = len(b)
        tmap = list(range(len(b))) if timestep_map is None else [int(t) for t in timestep_map]
        if len(tmap) != len(b):
            raise ValueError(f"timestep_map has {len(tmap)} entries for {len(b)} betas")
        self.timestep_map: tuple[int, ...] = tuple(tmap)
        self._set_coefficients(b)
        self._device_tables: dict[tuple[str, torch.device], Tensor] = {}

    def _set_coefficients(self, betas: np.ndarray) -> None:
        self.betas = betas
        acp = np.cumprod(1.0 - betas)
        self.alphas_cumprod = acp
        self.alphas_cumprod_prev = np.append(1.0, acp[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(acp)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - acp)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / acp)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / acp - 1.0)
        post_var = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - acp)
        self.posterior_variance = post_var
        # post_var[0] is 0; its log is clipped to the next value (Ho et al. 2020).
        first = post_var[1] if len(post_var) > 1 else betas[0]
        self.posterior_log_variance_clipped = np.log(np.append(first, post_var[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - acp)
        self.posterior_mean_coef2 = (
            (1.0 - self.alphas_cumprod_prev) * np.sqrt(1.0 - betas) / (1.0 - acp)
        )
        self.log_betas = np.log(betas)
        large = np.append(first, betas[1:])
        self.fixed_large_variance = large
        self.fixed_large_log_variance = np.log(large)

    # ---- gathering ----------------------------------------------------------------------------
    def coef(self, name: str, t: TimeIndex, x: Tensor) -> Tensor | float:
        """Coefficient table `name` at t: a float for an int t, else (B, 1, ...) in x's dtype."""
        table: np.ndarray = getattr(self, name)
        if isinstance(t, int):
            return float(table[t])
        key = (name, t.device)
        dev = self._device_tables.get(key)
        if dev is None:
            fdtype = torch.float32 if t.device.type == "mps" else torch.float64
            dev = torch.as_tensor(table, dtype=fdtype, device=t.device)
            self._device_tables[key] = dev
        return dev[t].to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))

    def model_timesteps(self, t: Tensor) -> Tensor:
        """Map indices (B,) of this diffusion to the original timesteps the model was trained on."""
        key = ("timestep_map", t.device)
        dev = self._device_tables.get(key)
        if dev is None:
            dev = torch.as_tensor(self.timestep_map, dtype=torch.long, device=t.device)
            self._device_tables[key] = dev
        return dev[t]

    # ---- forward process and posterior ---------------------------------------------------------
    def q_sample(self, x0: Tensor, t: TimeIndex, noise: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (Ho et al. 2020, eq. 4)."""
        return (
            self.coef("sqrt_alphas_cumprod", t, x0) * x0
            + self.coef("sqrt_one_minus_alphas_cumprod", t, x0) * noise
        )

    def q_posterior(self, x0: Tensor, x_t: Tensor, t: TimeIndex) -> Posterior:
        """q(x_{t-1} | x_t, x0) (Ho et al. 2020, eqs. 6-7)."""
        mean = (
            self.coef("posterior_mean_coef1", t, x_t) * x0
            + self.coef("posterior_mean_coef2", t, x_t) * x_t
        )
        return Posterior(
            mean=mean,
            variance=self.coef("posterior_variance", t, x_t),
            log_variance=self.coef("posterior_log_variance_clipped", t, x_t),
        )

    def predict_x0_from_eps(self, x_t: Tensor, t: TimeIndex, eps: Tensor) -> Tensor:
        """x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)."""
        return (
            self.coef("sqrt_recip_alphas_cumprod", t, x_t) * x_t
            - self.coef("sqrt_recipm1_alphas_cumprod", t, x_t) * eps
        )

    def predict_x0_from_v(self, x_t: Tensor, t: TimeIndex, v: Tensor) -> Tensor:
        """x0 = sqrt(abar) x_t - sqrt(1 - abar) v (Salimans & Ho 2022, s4): defined even where
        abar is ~0, where an eps net's x0 estimate is amplified error."""
        return (
            self.coef("sqrt_alphas_cumprod", t, x_t) * x_t
            - self.coef("sqrt_one_minus_alphas_cumprod", t, x_t) * v
        )

    def v_target(self, x0: Tensor, t: TimeIndex, noise: Tensor) -> Tensor:
        """v = sqrt(abar) eps - sqrt(1 - abar) x0, the training target of a v net."""
        return (
            self.coef("sqrt_alphas_cumprod", t, x0) * noise
            - self.coef("sqrt_one_minus_alphas_cumprod", t, x0) * x0
        )

    def predict_eps_from_x0(self, x_t: Tensor, t: TimeIndex, x0: Tensor) -> Tensor:
        """eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)."""
        return (self.coef("sqrt_recip_alphas_cumprod", t, x_t) * x_t - x0) / self.coef(
            "sqrt_recipm1_alphas_cumprod", t, x_t
        )

    # ---- reverse process ---------------------------------------------------------------------
    def split_model_output(self, model_output: Tensor, x_t: Tensor) -> tuple[Tensor, Tensor | None]:
        """(prediction, variance values in [-1, 1] or None) from the raw net output."""
        channels = x_t.shape[1]
        want = 2 * channels if self.variance == "learned_range" else channels
        if model_output.shape[0] != x_t.shape[0] or model_output.shape[1] != want:
            raise ValueError(
                f"model output shape {tuple(model_output.shape)} does not fit x_t "
                f"{tuple(x_t.shape)} with variance {self.variance!r} (expected {want} channels)"
            )
        if self.variance == "learned_range":
            return model_output[:, :channels], model_output[:, channels:]
        return model_output, None

    def p_mean_variance(
        self, model_output: Tensor, x_t: Tensor, t: TimeIndex, *, clip_x0: float | None = 1.0
    ) -> PMeanVariance:
        """p(x_{t-1} | x_t) from a raw output, learned range per Nichol & Dhariwal 2021 eq. 15."""
        pred, var_values = self.split_model_output(model_output, x_t)
        if var_values is not None:
            frac = (var_values + 1.0) / 2.0
            max_log = self.coef("log_betas", t, x_t)
            min_log = self.coef("posterior_log_variance_clipped", t, x_t)
            log_variance: Tensor | float = frac * max_log + (1.0 - frac) * min_log
            variance: Tensor | float = torch.exp(log_variance)  # type: ignore[arg-type]
        elif self.variance == "fixed_large":
            variance = self.coef("fixed_large_variance", t, x_t)
            log_variance = self.coef("fixed_large_log_variance", t, x_t)
        else:
            variance = self.coef("posterior_variance", t, x_t)
            log_variance = self.coef("posterior_log_variance_clipped", t, x_t)
        x0, eps = self.predict_x0_eps(model_output, x_t, t, clip_x0=clip_x0)
        mean = self.q_posterior(x0, x_t, t).mean
        return PMeanVariance(
            mean=mean, variance=variance, log_variance=log_variance, x0=x0, eps=eps
        )

    def predict_x0(
        self, model_output: Tensor, x_t: Tensor, t: TimeIndex, *, clip_x0: float | None = 1.0
    ) -> Tensor:
        """The x0 a raw output implies, clamped to [-clip_x0, clip_x0]; variance is ignored."""
        pred, _ = self.split_model_output(model_output, x_t)
        if self.prediction == "x0":
            x0 = pred
        elif self.prediction == "v":
            x0 = self.predict_x0_from_v(x_t, t, pred)
        else:
            x0 = self.predict_x0_from_eps(x_t, t, pred)
        return x0 if clip_x0 is None else x0.clamp(-clip_x0, clip_x0)

    def predict_x0_eps(
        self, model_output: Tensor, x_t: Tensor, t: TimeIndex, *, clip_x0: float | None = 1.0
    ) -> tuple[Tensor, Tensor]:
        """(x0, eps) from a raw output; eps is recomputed from x0 when x0 was clamped."""
        x0 = self.predict_x0(model_output, x_t, t, clip_x0=clip_x0)
        if self.prediction == "eps" and clip_x0 is None:
            return x0, model_output[:, : x_t.shape[1]]
        return x0, self.predict_eps_from_x0(x_t, t, x0)

    # ---- training ----------------------------------------------------------------------------
    def training_losses(
        self,
        model_fn: TrainModelFn,
        x0: Tensor,
        t: Tensor,
        *,
        noise: Tensor,
        model_kwargs: dict[str, Any] | None = None,
    ) -> TrainingLosses:
        """L_simple on eps or x0, plus L_vb for learned_range (Nichol & Dhariwal 2021, s3.1)."""
        x_t = self.q_sample(x0, t, noise)
        output = model_fn(x_t, self.model_timesteps(t), **(model_kwargs or {}))
        pred, var_values = self.split_model_output(output, x_t)
        targets = {"eps": noise, "x0": x0}
        target = targets[self.prediction] if self.prediction in targets else (
            self.v_target(x0, t, noise))
        mse = mean_flat((target - pred) ** 2)
        if var_values is None:
            vb = torch.zeros_like(mse)
            return TrainingLosses(mse=mse, vb=vb, loss=mse)
        # The vb term trains only the variance: the mean is frozen (detached).
        frozen = torch.cat([pred.detach(), var_values], dim=1)
        vb = self._vb_bits(frozen, x0, x_t, t)
        # L_vb = T * L_t estimates the whole bound from one uniformly drawn t.
        loss = mse + VB_LAMBDA * self.num_timesteps * vb
        return TrainingLosses(mse=mse, vb=vb, loss=loss)

    def _vb_bits(self, output: Tensor, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """L_t in bits per dimension: KL for t > 0, discretised decoder NLL at t = 0 (B,)."""
        true = self.q_posterior(x0, x_t, t)
        model = self.p_mean_variance(output, x_t, t, clip_x0=None)
        true_log = torch.as_tensor(true.log_variance, dtype=x_t.dtype, device=x_t.device)
        model_log = torch.as_tensor(model.log_variance, dtype=x_t.dtype, device=x_t.device)
        kl = mean_flat(normal_kl(true.mean, true_log, model.mean, model_log)) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, mean=model.mean, log_scale=0.5 * model_log)
        nll_bits = mean_flat(nll) / math.log(2.0)
        return torch.where(t == 0, nll_bits, kl)


class DiffusionSpec(Protocol):
    """Anything with the four diffusion fields of a stage config (e.g. PriorConfig)."""

    @property
    def schedule(self) -> str: ...
    @property
    def timesteps(self) -> int: ...
    @property
    def prediction(self) -> str: ...
    @property
    def variance(self) -> str: ...


def make_diffusion(
    *,
    schedule: ScheduleName | str,
    timesteps: int,
    prediction: Prediction | str,
    variance: Variance | str,
) -> GaussianDiffusion:
    """The full (unrespaced) diffusion a stage was trained with."""
    betas = get_named_beta_schedule(schedule, timesteps)
    return GaussianDiffusion(betas, prediction=prediction, variance=variance)  # type: ignore[arg-type]


def diffusion_from_config(config: DiffusionSpec) -> GaussianDiffusion:
    """make_diffusion from a config object's schedule/timesteps/prediction/variance fields."""
    return make_diffusion(
        schedule=config.schedule,
        timesteps=config.timesteps,
        prediction=config.prediction,
        variance=config.variance,
    )
