"""A model family: CLIP, prior, decoder and upsampler(s) with configs, saved in one directory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from shared.family_info import native_side_for
from worker.unclip import batch_invariance
from worker.unclip.clip_encoder import ClipEncoder
from worker.unclip.configs import ClipConfig, DecoderConfig, PriorConfig, UpsamplerConfig
from worker.unclip.diffusion import GaussianDiffusion, diffusion_from_config, respaced
from worker.unclip.diffusion.respace import SPACING_KINDS, spacing_spec
from worker.unclip.diffusion.samplers import SAMPLER_NAMES
from worker.unclip.frozen_graphs import TRACE_AFTER_CALLS, GraphCache
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
    # Per cascade upsampler ("upsampler256"), its step count; unset: the request's upsampler
    # steps, as the first upsampler takes. A request's steps stay those of the first.
    cascade_steps: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLER_NAMES:
            raise FamilyError(
                f"default sampler {self.sampler!r} is unknown; allowed: {', '.join(SAMPLER_NAMES)}"
            )
        if self.prior_candidates < 1:
            raise FamilyError(f"prior_candidates must be >= 1, got {self.prior_candidates}")
        _check_mapping("spacing", self.spacing, SAMPLER_NAMES, SPACING_KINDS)
        _check_mapping("solver_start", self.solver_start, STAGES, None)
        for key, value in dict(self.cascade_steps).items():
            if not (key.startswith("upsampler") and key[len("upsampler") :].isdigit()):
                raise FamilyError(f"defaults.cascade_steps: key {key!r} is not upsampler<side>")
            if not (isinstance(value, int) and value >= 1):
                raise FamilyError(
                    f"defaults.cascade_steps.{key} must be an int >= 1, got {value!r}"
                )

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
            **({"cascade_steps": dict(self.cascade_steps)} if self.cascade_steps else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FamilyDefaults:
        known = {f.name for f in fields(cls)}  # family.json's keys are the fields' names
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
    # Further upsamplers, each enlarging the one before's output (DALL-E 2's 64 -> 256), saved
    # as upsampler{side}.json / .safetensors; a request runs the chain up to its native size.
    cascade: tuple[UpsamplerPair, ...] = ()
    # The mode of renders whose RenderSpec leaves `reproducible` unset: batch-invariant bytes
    # (True) or full speed (False). A worker sets it from settings.reproducible.
    reproducible: bool = False
    # Run the decoder and upsampler calls as frozen graphs where they give the eager bytes
    # (worker/unclip/frozen_graphs.py). A worker sets it from settings.frozen_graphs.
    frozen_graphs: bool = True
    # Eager calls of a network call's shape before it is traced (0: on first use); a worker
    # sets it from settings.frozen_graphs_trace_after_calls.
    frozen_graphs_trace_after_calls: int = TRACE_AFTER_CALLS
    _respaced: dict[tuple[str, int, str], GaussianDiffusion] = field(default_factory=dict)
    _graphs: GraphCache = field(default_factory=GraphCache)

    def __post_init__(self) -> None:
        # Once per family, not per call: the layers read each thread's mode themselves.
        batch_invariance.install(self.networks().values())
        # The attention-free upsamplers convolve large maps: in channels-last layout oneDNN
        # skips a reorder per convolution (measured -15% at batch 1, -28% at batch 8 on the
        # shipped family's CPU upsampler; docs/benchmarks.md). Saved weights stay contiguous.
        for pair in self.upsamplers:
            pair.to(memory_format=torch.channels_last)

    @property
    def graphs(self) -> GraphCache | None:
        """The cache of frozen network calls; None when frozen_graphs is off."""
        if not self.frozen_graphs:
            return None
        self._graphs.trace_after_calls = self.frozen_graphs_trace_after_calls
        return self._graphs

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
        """The first upsampler's output side: the smallest native size."""
        return self.upsampler.cfg.image_size

    @property
    def upsamplers(self) -> tuple[UpsamplerPair, ...]:
        """The upsampler chain, first (decoder size -> final_size) to last."""
        return (self.upsampler, *self.cascade)

    @property
    def native_sides(self) -> tuple[int, ...]:
        """Every side the chain makes, ascending: (64,) or (64, 256)."""
        return tuple(pair.cfg.image_size for pair in self.upsamplers)

    def output_side(self, requested: int | None) -> int:
        """The native side a request of `requested` px runs to (None: final_size); larger
        requests are resized from the largest (shared/family_info.native_side_for)."""
        if requested is None:
            return self.final_size
        return native_side_for(self.native_sides, requested)

    def upsampler_stage_name(self, pair: UpsamplerPair) -> str:
        """'upsampler' for the first, 'upsampler{side}' for a cascade one (files, diffusions)."""
        return "upsampler" if pair is self.upsampler else f"upsampler{pair.cfg.image_size}"

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
                **{self.upsampler_stage_name(p): p.cfg.diffusion for p in self.cascade},
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
        self._graphs = GraphCache()  # traces hold the weights they were made with
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
            **{self.upsampler_stage_name(p): p for p in self.cascade},
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
    sizes = [f"{side}x{side}" for side in family.native_sides]  # the API reads them
    meta = {
        "format": FORMAT,
        "name": family.name,
        "native_size": sizes[-1],  # the largest, for readers of the one-size format
        **({"native_sizes": sizes} if len(sizes) > 1 else {}),
        "defaults": family.defaults.to_dict(),
    }
    _write_json(root / "family.json", meta)
    configs = {
        "clip": family.clip_config,
        "prior": family.prior_config,
        "decoder": family.decoder_config,
        "upsampler": family.upsampler_config,
        **{family.upsampler_stage_name(p): p.cfg for p in family.cascade},
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
    cascade = _load_cascade(root, meta, upsampler.cfg.image_size)
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
        cascade=cascade,
    )
    return family.to(device, dtype)


def _load_cascade(root: Path, meta: dict[str, Any], first_side: int) -> tuple[UpsamplerPair, ...]:
    """The upsamplers after the first, one per native size above it (family.json
    native_sizes; a family with only native_size has none), each reading upsampler{side}.*."""
    sizes = meta.get("native_sizes", [])
    if not isinstance(sizes, list):
        raise FamilyError(f"{root / 'family.json'}: native_sizes must be a list, got {sizes!r}")
    sides = sorted({int(str(size).partition("x")[0]) for size in sizes} - {first_side})
    chain, below = [], first_side
    for side in sides:
        name = f"upsampler{side}"
        for suffix in (".json", ".safetensors"):
            if not (root / f"{name}{suffix}").is_file():
                raise FamilyError(f"{root / 'family.json'} declares {side}x{side} but "
                                  f"{root / (name + suffix)} is missing")
        pair = UpsamplerPair(UpsamplerConfig.from_dict(_read_json(root, f"{name}.json")))
        if (pair.cfg.low_res_size, pair.cfg.image_size) != (below, side):
            raise FamilyError(f"{root / (name + '.json')}: upsamples {pair.cfg.low_res_size} -> "
                              f"{pair.cfg.image_size}, the chain needs {below} -> {side}")
        _load_net(pair, root, f"{name}.safetensors")
        chain.append(pair.eval())
        below = side
    return tuple(chain)
