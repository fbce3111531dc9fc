"""A model family: CLIP, prior, decoder and upsampler with configs, saved in one directory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from worker.unclip.clip_encoder import ClipEncoder
from worker.unclip.configs import ClipConfig, DecoderConfig, PriorConfig, UpsamplerConfig
from worker.unclip.diffusion import GaussianDiffusion, diffusion_from_config, respaced
from worker.unclip.diffusion.respace import SPACING_KINDS, spacing_spec
from worker.unclip.diffusion.samplers import SAMPLER_NAMES
from worker.unclip.nets import DecoderNet, PriorNet, UpsamplerPair
from worker.unclip.render_spec import StageSteps

FORMAT = "unclip-family/1"
REQUIRED_FILES = (
    "family.json",
    "clip.json",
    "clip.safetensors",
    "prior.json",
    "prior.safetensors",
    "prior_stats.safetensors",
    "decoder.json",
    "decoder.safetensors",
    "upsampler.json",
    "upsampler.safetensors",
)


class FamilyError(ValueError):
    """A family directory is missing, incomplete or malformed."""


STAGES = ("prior", "decoder", "upsampler")
# How each sampler spreads a stage's steps unless family.json's defaults.spacing says
# otherwise: Karlo's evenly spread steps for ddpm, trailing ones (Lin et al. 2023) else.
DEFAULT_SPACING = {"ddpm": "linspace", "ddim": "trailing", "dpmpp_2m": "trailing"}
SOLVERS = ("ddim", "dpmpp_2m")  # the samplers defaults.solver_start applies to


@dataclass(frozen=True)
class FamilyDefaults:
    """Sampling defaults stored in family.json."""

    steps: StageSteps = field(default_factory=StageSteps)
    sampler: str = "ddim"
    prior_guidance: float = 4.0
    decoder_guidance: float = 8.0
    prior_candidates: int = 2  # best-of-k prior samples, reranked by similarity to the text
    # Per sampler, how its steps are spread (respace.SPACING_KINDS); unset: DEFAULT_SPACING.
    spacing: dict[str, str] = field(default_factory=dict)
    # Per stage, the largest trained timestep DDIM and DPM-Solver++ start from (unset: T - 1).
    # For an eps net, x0 at T - 1 is its error over sqrt(alpha_bar), ~2e4x for cosine at 1000.
    solver_start: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLER_NAMES:
            raise FamilyError(
                f"default sampler {self.sampler!r} is unknown; allowed: {', '.join(SAMPLER_NAMES)}"
            )
        if self.prior_candidates < 1:
            raise FamilyError(f"prior_candidates must be >= 1, got {self.prior_candidates}")
        _check_mapping("spacing", self.spacing, SAMPLER_NAMES, SPACING_KINDS)
        _check_mapping("solver_start", self.solver_start, STAGES, None)

    def to_dict(self) -> dict[str, Any]:
        s = self.steps
        return {
            "steps": [s.prior, s.decoder, s.upsampler],
            "sampler": self.sampler,
            "prior_guidance": self.prior_guidance,
            "decoder_guidance": self.decoder_guidance,
            "prior_candidates": self.prior_candidates,
            **({"spacing": dict(self.spacing)} if self.spacing else {}),
            **({"solver_start": dict(self.solver_start)} if self.solver_start else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FamilyDefaults:
        known = {
            "steps",
            "sampler",
            "prior_guidance",
            "decoder_guidance",
            "prior_candidates",
            "spacing",
            "solver_start",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise FamilyError(
                f"family.json defaults: unknown keys {unknown}; allowed: {sorted(known)}"
            )
        kwargs = dict(data)
        if "steps" in kwargs:
            steps = kwargs["steps"]
            if not isinstance(steps, list) or len(steps) != 3:
                raise FamilyError(
                    f"defaults.steps must be [prior, decoder, upsampler], got {steps!r}"
                )
            kwargs["steps"] = StageSteps(*steps)
        return cls(**kwargs)


def _check_mapping(
    name: str, mapping: object, keys: tuple[str, ...], values: tuple[str, ...] | None
) -> None:
    """FamilyError unless mapping maps some of `keys` to `values` (None: ints >= 0)."""
    if not isinstance(mapping, dict):
        raise FamilyError(f"defaults.{name} must be an object, got {mapping!r}")
    for key, value in mapping.items():
        if key not in keys:
            raise FamilyError(f"defaults.{name}: unknown key {key!r}; allowed: {', '.join(keys)}")
        if values is not None and value not in values:
            raise FamilyError(
                f"defaults.{name}.{key}: {value!r} is unknown; allowed: {', '.join(values)}"
            )
        if values is None and not (isinstance(value, int) and value >= 0):
            raise FamilyError(f"defaults.{name}.{key} must be an int >= 0, got {value!r}")


@dataclass
class Family:
    """Everything needed to render: networks on one device and dtype, configs and diffusions."""

    name: str
    clip: ClipEncoder
    prior: PriorNet
    prior_mean: torch.Tensor  # (D,) float32: stats of CLIP image embeddings
    prior_std: torch.Tensor  # (D,) float32
    decoder: DecoderNet
    upsampler: UpsamplerPair
    defaults: FamilyDefaults = field(default_factory=FamilyDefaults)
    _respaced: dict[tuple[str, int, str], GaussianDiffusion] = field(default_factory=dict)

    @property
    def clip_config(self) -> ClipConfig:
        return self.clip.config

    @property
    def prior_config(self) -> PriorConfig:
        return self.prior.cfg

    @property
    def decoder_config(self) -> DecoderConfig:
        return self.decoder.cfg

    @property
    def upsampler_config(self) -> UpsamplerConfig:
        return self.upsampler.cfg

    @property
    def device(self) -> torch.device:
        return self.prior.out_proj.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.prior.dtype

    @property
    def decoder_size(self) -> int:
        return self.decoder.cfg.image_size

    @property
    def final_size(self) -> int:
        return self.upsampler.cfg.image_size

    def diffusion(self, stage: str, steps: int, sampler: str) -> GaussianDiffusion:
        """The stage's trained diffusion respaced to `steps` for `sampler` (cached).

        By default ddpm keeps Karlo's evenly spread steps; ddim and dpmpp_2m use trailing
        steps, which are better with few steps (Lin et al. 2023). defaults.spacing chooses
        otherwise per sampler, and defaults.solver_start lets ddim and dpmpp_2m start below
        T - 1 on a stage.
        """
        if sampler not in SAMPLER_NAMES:
            raise ValueError(f"unknown sampler {sampler!r}; allowed: {', '.join(SAMPLER_NAMES)}")
        key = (stage, steps, sampler)
        if key not in self._respaced:
            configs = {
                "prior": self.prior.cfg.diffusion,
                "decoder": self.decoder.cfg.diffusion,
                "upsampler": self.upsampler.cfg.diffusion,
            }
            if stage not in configs:
                raise ValueError(f"unknown stage {stage!r}; allowed: {', '.join(configs)}")
            full = diffusion_from_config(configs[stage])
            kind = self.defaults.spacing.get(sampler, DEFAULT_SPACING[sampler])
            start = self.defaults.solver_start.get(stage) if sampler in SOLVERS else None
            self._respaced[key] = respaced(full, spacing_spec(kind, steps), start=start)
        return self._respaced[key]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> Family:
        """Move every network to `device` and `dtype` (the stats stay float32)."""
        for net in self.networks().values():
            net.to(device=torch.device(device), dtype=dtype)
        self.prior_mean = self.prior_mean.to(device, torch.float32)
        self.prior_std = self.prior_std.to(device, torch.float32)
        return self

    def networks(self) -> dict[str, nn.Module]:
        return {
            "clip": self.clip.model,
            "prior": self.prior,
            "decoder": self.decoder,
            "upsampler": self.upsampler,
        }


def _weights(module: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A module's state dict on the CPU, floating tensors cast to `dtype`, contiguous."""
    out = {}
    for key, value in module.state_dict().items():
        value = value.detach().to("cpu")
        out[key] = (value.to(dtype) if value.is_floating_point() else value).contiguous()
    return out


def save_family(family: Family, path: str | Path, *, dtype: torch.dtype = torch.float16) -> Path:
    """Write `family` as a family directory (docs/architecture.md), weights in `dtype`."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    side = family.final_size  # what the upsampler makes; the API reports it (family_info)
    meta = {
        "format": FORMAT,
        "name": family.name,
        "native_size": f"{side}x{side}",
        "defaults": family.defaults.to_dict(),
    }
    _write_json(root / "family.json", meta)
    configs = {
        "clip": family.clip_config,
        "prior": family.prior_config,
        "decoder": family.decoder_config,
        "upsampler": family.upsampler_config,
    }
    for stage, config in configs.items():
        _write_json(root / f"{stage}.json", config.to_dict())
    for stage, net in family.networks().items():
        save_file(_weights(net, dtype), str(root / f"{stage}.safetensors"))
    stats = {
        "mean": family.prior_mean.detach().to("cpu", torch.float32).contiguous(),
        "std": family.prior_std.detach().to("cpu", torch.float32).contiguous(),
    }
    save_file(stats, str(root / "prior_stats.safetensors"))
    return root


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _read_json(root: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads((root / name).read_text())
    except json.JSONDecodeError as exc:
        raise FamilyError(f"{root / name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise FamilyError(f"{root / name} must hold a JSON object, got {type(data).__name__}")
    return data


def check_family_dir(path: str | Path) -> Path:
    """The directory as a Path, or FamilyError naming what is missing."""
    root = Path(path)
    if not root.is_dir():
        raise FamilyError(f"model family directory not found: {root}")
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise FamilyError(
            f"model family {root} is incomplete: missing {', '.join(missing)} "
            f"(a family holds {', '.join(REQUIRED_FILES)})"
        )
    return root


def _load_net(net: nn.Module, root: Path, name: str) -> None:
    state = load_file(str(root / name))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FamilyError(f"{root / name} does not fit its config: {exc}") from exc


def load_family(
    path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Family:
    """Load a family directory onto `device` in `dtype` (float32, bfloat16 or float16)."""
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype}")
    root = check_family_dir(path)
    meta = _read_json(root, "family.json")
    if meta.get("format") != FORMAT:
        raise FamilyError(
            f"{root / 'family.json'}: format must be {FORMAT!r}, got {meta.get('format')!r}"
        )
    clip = ClipEncoder.build(
        ClipConfig.from_dict(_read_json(root, "clip.json")), weights=root / "clip.safetensors"
    )
    prior = PriorNet(PriorConfig.from_dict(_read_json(root, "prior.json")))
    decoder = DecoderNet(DecoderConfig.from_dict(_read_json(root, "decoder.json")))
    upsampler = UpsamplerPair(UpsamplerConfig.from_dict(_read_json(root, "upsampler.json")))
    for net, name in ((prior, "prior"), (decoder, "decoder"), (upsampler, "upsampler")):
        _load_net(net, root, f"{name}.safetensors")
    stats = load_file(str(root / "prior_stats.safetensors"))
    if set(stats) != {"mean", "std"}:
        raise FamilyError(
            f"{root / 'prior_stats.safetensors'} must hold 'mean' and 'std', got {sorted(stats)}"
        )
    family = Family(
        name=str(meta.get("name", root.name)),
        clip=clip,
        prior=prior.eval(),
        prior_mean=stats["mean"],
        prior_std=stats["std"],
        decoder=decoder.eval(),
        upsampler=upsampler.eval(),
        defaults=FamilyDefaults.from_dict(meta.get("defaults", {})),
    )
    return family.to(device, dtype)
