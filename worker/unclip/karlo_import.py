"""Turn Karlo v1 alpha's files (three .ckpt, the stats, OpenAI CLIP) into a model family."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import pickle
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from worker.unclip.clip_encoder import register_open_clip_config
from worker.unclip.configs import ClipConfig, ConfigError
from worker.unclip.family import FORMAT, FamilyDefaults
from worker.unclip.karlo_configs import StageConfig, karlo_clip_config, read_karlo_yaml
from worker.unclip.karlo_infer import (
    infer_decoder_config,
    infer_prior_config,
    infer_upsampler_config,
)
from worker.unclip.nets import DecoderNet, PriorNet, UpsamplerPair, pad_decoder_input_channels
from worker.unclip.render_spec import StageSteps

# Key prefix of each stage in Karlo's checkpoints (its wrapper modules hold the networks).
CHECKPOINT_PREFIXES = {"prior": "model.", "decoder": "model.", "upsampler": ""}
# Karlo's released file names as glob patterns, so renamed fine-tuned variants still match.
PATTERNS = {
    "prior": "prior*.ckpt",
    "decoder": "decoder*.ckpt",
    "upsampler": "*sr*.ckpt",
    "stats": "*stats*.th",
    "clip": "ViT-*.pt",
}
NETS: dict[str, Callable[[Any], nn.Module]] = {
    "prior": PriorNet,
    "decoder": DecoderNet,
    "upsampler": UpsamplerPair,
}
# Karlo's published sampling: DDPM at 25/25/7 steps, guidance 4 (prior) and 8 (decoder).
# Its decoder and upsampler predict eps on a cosine schedule: DDIM and DPM-Solver++ start at
# 997 there, as Karlo's own DDIM spacing "fast27" does (x0 at 999 is the error x 2e4).
KARLO_DEFAULTS = FamilyDefaults(
    StageSteps(25, 25, 7), "ddpm", 4.0, 8.0, 2, solver_start={"decoder": 997, "upsampler": 997}
)
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


class KarloImportError(ValueError):
    """Karlo's files are missing, ambiguous or do not fit the configs."""


@dataclass(frozen=True)
class KarloFiles:
    """The five source files of a Karlo release."""

    prior: Path
    decoder: Path
    upsampler: Path
    stats: Path
    clip: Path


def find_karlo_files(src_dir: str | Path) -> KarloFiles:
    """Locate Karlo's files in `src_dir` by their released names (see PATTERNS)."""
    src = Path(src_dir)
    if not src.is_dir():
        raise KarloImportError(f"Karlo source directory not found: {src}")
    found = {}
    for role, pattern in PATTERNS.items():
        matches = sorted(p for p in src.glob(pattern) if p.is_file())
        if role == "upsampler":
            matches = [p for p in matches if not p.name.startswith(("prior", "decoder"))]
        if len(matches) != 1:
            raise KarloImportError(
                f"{src}: expected exactly one {role} file matching {pattern!r}, found "
                f"{[p.name for p in matches] or 'none'}"
            )
        found[role] = matches[0]
    return KarloFiles(**found)


def _torch_load(path: Path, allow_pickle: bool) -> Any:
    """torch.load on the CPU, memory-mapped where the file format allows it."""
    try:
        return torch.load(
            path, map_location="cpu", weights_only=not allow_pickle, mmap=zipfile.is_zipfile(path)
        )
    except pickle.UnpicklingError as exc:
        raise KarloImportError(
            f"{path} holds Python objects besides tensors; if you trust the file, import it "
            "with allow_pickle (--allow-pickle), which lets the file run code"
        ) from exc


def read_checkpoint(
    path: Path, stage: str, *, allow_pickle: bool = False
) -> dict[str, torch.Tensor]:
    """A Karlo .ckpt's "state_dict" with the stage's key prefix removed."""
    data = _torch_load(path, allow_pickle)
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        raise KarloImportError(f"{path}: expected a dict with a 'state_dict' entry")
    prefix = CHECKPOINT_PREFIXES[stage]
    state = data["state_dict"]
    wrong = [k for k in state if not k.startswith(prefix)]
    if wrong:
        raise KarloImportError(f"{path}: keys without the {prefix!r} prefix, e.g. {wrong[:3]}")
    return {k[len(prefix) :]: v for k, v in state.items()}


def read_clip_weights(path: Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """OpenAI CLIP weights: a TorchScript archive, a state dict file or safetensors."""
    if path.suffix == ".safetensors":
        return load_file(str(path))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            scripted = any(n.endswith("constants.pkl") for n in archive.namelist())
        if scripted:  # OpenAI's released .pt files are TorchScript modules
            state = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
            return {k: v for k, v in state.items() if k not in _OPENAI_EXTRAS}
    data = _torch_load(path, allow_pickle)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise KarloImportError(f"{path}: expected CLIP weights, got {type(data).__name__}")
    return {k.removeprefix("module."): v for k, v in data.items() if k not in _OPENAI_EXTRAS}


_OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")


def read_stats(path: Path, clip_dim: int) -> dict[str, torch.Tensor]:
    """Karlo's (mean, std) of CLIP image embeddings -> {"mean": (D,), "std": (D,)} float32."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise KarloImportError(f"{path}: expected a (mean, std) pair, got {type(data).__name__}")
    mean, std = (torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in data)
    if mean.shape != (clip_dim,) or std.shape != (clip_dim,):
        raise KarloImportError(
            f"{path}: mean/std must have {clip_dim} values (the prior's clip_dim), "
            f"got {tuple(mean.shape)} and {tuple(std.shape)}"
        )
    if not bool((std > 0).all()):
        raise KarloImportError(f"{path}: std must be positive everywhere")
    return {"mean": mean.contiguous(), "std": std.contiguous()}


def read_config_dir(config_dir: str | Path) -> dict[str, StageConfig]:
    """Every Karlo YAML in `config_dir`, by stage (prior, decoder, upsampler)."""
    stage_of = {"PriorConfig": "prior", "DecoderConfig": "decoder", "UpsamplerConfig": "upsampler"}
    out: dict[str, StageConfig] = {}
    for path in sorted(Path(config_dir).glob("*.yaml")):
        cfg = read_karlo_yaml(path)
        stage = stage_of[type(cfg).__name__]
        if stage in out:
            raise KarloImportError(f"{config_dir}: more than one {stage} YAML ({path.name})")
        out[stage] = cfg
    missing = sorted(set(stage_of.values()) - set(out))
    if missing:
        raise KarloImportError(f"{config_dir}: no Karlo YAML for {missing}")
    return out


def _config_for(stage: str, state: dict[str, torch.Tensor], given: StageConfig | None) -> Any:
    if given is not None:
        return given
    inferers: dict[str, Callable[[dict[str, torch.Tensor]], StageConfig]] = {
        "prior": infer_prior_config,
        "decoder": infer_decoder_config,
        "upsampler": infer_upsampler_config,
    }
    infer = inferers[stage]
    try:
        return infer(state)
    except ConfigError as exc:
        raise KarloImportError(f"{stage}: {exc}") from exc


def check_fits(stage: str, cfg: Any, state: dict[str, torch.Tensor]) -> None:
    """Raise KarloImportError unless `state` has exactly the keys and shapes `cfg` builds."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in NETS[stage](cfg).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    if missing or extra or wrong:
        details = [f"{k}: {got[k]} vs config {expected[k]}" for k in wrong[:5]]
        if missing:
            details.append(f"missing {missing[:5]}")
        if extra:
            details.append(f"unexpected {extra[:5]}")
        raise KarloImportError(f"{stage} checkpoint does not fit its config: {'; '.join(details)}")


def _save(state: dict[str, torch.Tensor], path: Path, dtype: torch.dtype) -> None:
    out = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(out, str(path))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _import_stage(
    stage: str,
    files: KarloFiles,
    out: Path,
    given: StageConfig | None,
    dtype: torch.dtype,
    allow_pickle: bool,
) -> Any:
    state = read_checkpoint(getattr(files, stage), stage, allow_pickle=allow_pickle)
    cfg = _config_for(stage, state, given)
    if stage == "decoder":  # our decoder always takes [x_t, image * keep, keep]
        state = pad_decoder_input_channels(state, 7)
        cfg = dataclasses.replace(cfg, in_channels=7)
    check_fits(stage, cfg, state)
    _write_json(out / f"{stage}.json", cfg.to_dict())
    _save(state, out / f"{stage}.safetensors", dtype)
    return cfg


def clip_shapes(cfg: ClipConfig) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the open_clip model `cfg` names (built on the meta device)."""
    if cfg.open_clip_config is not None:
        register_open_clip_config(cfg.name, cfg.open_clip_config)
    elif open_clip.get_model_config(cfg.name) is None:
        raise KarloImportError(f"unknown open_clip architecture {cfg.name!r}")
    logging.disable(logging.WARNING)  # "no pretrained weights loaded": expected here
    try:
        model = open_clip.create_model(cfg.name, pretrained=None, device="meta")
    finally:
        logging.disable(logging.NOTSET)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _import_clip(
    files: KarloFiles, out: Path, cfg: ClipConfig, dtype: torch.dtype, allow_pickle: bool
) -> None:
    state = read_clip_weights(files.clip, allow_pickle=allow_pickle)
    expected, got = clip_shapes(cfg), {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        bad = sorted(set(expected) ^ set(got)) + [
            k for k in sorted(set(expected) & set(got)) if expected[k] != got[k]
        ]
        raise KarloImportError(
            f"{files.clip} does not fit open_clip {cfg.name!r}: keys or shapes differ at {bad[:5]}"
        )
    _write_json(out / "clip.json", cfg.to_dict())
    _save(state, out / "clip.safetensors", dtype)


MODEL_CARD = """# {name}

Imported from Karlo v1 alpha (kakaobrain/karlo) by `unclip import-karlo` on {date}.

- Sources: {sources}
- Configs: {configs}
- Weights stored as {dtype}. The decoder's first convolution was zero-padded from Karlo's
  3 input channels to our 7-channel layout `[x_t, image * keep, keep]`: outputs are
  unchanged, but Karlo's decoder was never trained for inpainting, so edits rely on
  forcing the known region during sampling.
- Karlo's published result: MS-COCO FID 15.24 at 25/25/7 steps (prior/decoder/upsampler),
  guidance 4.0 (prior) and 8.0 (decoder). Not re-measured here.
- Licence: see kakaobrain/karlo (CreativeML Open RAIL-M) and OpenAI CLIP (MIT).
"""


IMPORT_PARTS = ("prior", "decoder", "upsampler", "prior_stats", "clip")


def import_karlo(
    src_dir: str | Path,
    dest_dir: str | Path,
    *,
    config_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float16,
    clip_config: ClipConfig | None = None,
    allow_pickle: bool = False,
    name: str | None = None,
    on_part: Callable[[str], None] | None = None,
) -> Path:
    """Write a model family directory (docs/architecture.md) from Karlo's released files.

    Sizes come from Karlo's YAML configs in `config_dir` when given, else from the
    checkpoints' tensor shapes (karlo_infer). The family is assembled in a sibling
    ".partial" directory and moved into place at the end; `dest_dir` must not exist yet.
    `on_part` is called with each part's name once it is written (IMPORT_PARTS in order).
    """
    done = on_part or (lambda _: None)
    if dtype not in DTYPES.values():
        raise KarloImportError(f"dtype must be one of float16, bfloat16, float32; got {dtype}")
    dest = Path(dest_dir)
    if dest.exists():
        raise KarloImportError(f"destination already exists: {dest}; choose a new directory")
    files = find_karlo_files(src_dir)
    given = read_config_dir(config_dir) if config_dir is not None else {}
    work = dest.with_name(dest.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        configs = {}
        for stage in ("prior", "decoder", "upsampler"):
            configs[stage] = _import_stage(stage, files, work, given.get(stage), dtype,
                                           allow_pickle)  # fmt: skip
            done(stage)
        save_file(
            read_stats(files.stats, configs["prior"].clip_dim),
            str(work / "prior_stats.safetensors"),
        )
        done("prior_stats")
        _import_clip(files, work, clip_config or karlo_clip_config(), dtype, allow_pickle)
        done("clip")
        meta = {"format": FORMAT, "name": name or dest.name, "defaults": KARLO_DEFAULTS.to_dict()}
        _write_json(work / "family.json", meta)
        card = MODEL_CARD.format(
            name=meta["name"],
            date=datetime.date.today().isoformat(),
            sources=", ".join(p.name for p in dataclasses.astuple(files)),
            configs=f"Karlo YAML from {config_dir}" if config_dir else "inferred from shapes",
            dtype=str(dtype).removeprefix("torch."),
        )
        (work / "MODEL_CARD.md").write_text(card)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    work.rename(dest)
    return dest
