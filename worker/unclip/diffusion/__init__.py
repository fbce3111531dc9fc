"""Diffusion math and samplers: schedules, GaussianDiffusion, respacing, one-signature samplers."""

from worker.unclip.diffusion.gaussian_diffusion import (
    DiffusionSpec,
    GaussianDiffusion,
    PMeanVariance,
    Posterior,
    Prediction,
    TrainingLosses,
    Variance,
    diffusion_from_config,
    make_diffusion,
)
from worker.unclip.diffusion.respace import respace, respaced, space_timesteps
from worker.unclip.diffusion.samplers import (
    SAMPLER_NAMES,
    Inpaint,
    ModelFn,
    Sampler,
    SamplerName,
    StepCallback,
    StepInfo,
    get_sampler,
    randn_rows,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
)
from worker.unclip.diffusion.schedules import SCHEDULE_NAMES, ScheduleName, get_named_beta_schedule

__all__ = [
    "SAMPLER_NAMES",
    "SCHEDULE_NAMES",
    "DiffusionSpec",
    "GaussianDiffusion",
    "Inpaint",
    "ModelFn",
    "PMeanVariance",
    "Posterior",
    "Prediction",
    "Sampler",
    "SamplerName",
    "ScheduleName",
    "StepCallback",
    "StepInfo",
    "TrainingLosses",
    "Variance",
    "diffusion_from_config",
    "get_named_beta_schedule",
    "get_sampler",
    "make_diffusion",
    "randn_rows",
    "respace",
    "respaced",
    "space_timesteps",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
]
