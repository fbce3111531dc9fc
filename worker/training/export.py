"""Turn a training run (EMA weights of the four stages, and the 64 -> 256 upsampler when it was
trained) into a model family directory, or add a trained cascade upsampler to a family."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from worker.training.checkpoint import checkpoint_path, load_checkpoint
from worker.training.family_configs import shapes_family_defaults
from worker.training.model_card import write_model_card
from worker.training.train_clip import load_trained_clip
from worker.training.train_decoder import load_trained_decoder
from worker.training.train_family import OPTIONAL_STAGES, STAGES, SUMMARY_NAME, stage_dir
from worker.training.train_prior import load_trained_prior
from worker.training.train_upsampler import load_trained_upsampler
from worker.unclip.family import Family, FamilyDefaults, FamilyError, save_family

FAMILY_NAME = "shapes-tiny"
MAX_FAMILY_MB = 60.0  # issue 12: the family with its 64 -> 256 upsampler stays within 60 MB


def family_from_run(run_dir: Path, *, name: str = FAMILY_NAME,
                    defaults: FamilyDefaults | None = None) -> Family:
    """A Family holding the EMA networks of run_dir/{clip,prior,decoder,upsampler}."""
    missing = [s for s in STAGES if not (stage_dir(run_dir, s) / "checkpoint.pt").is_file()]
    if missing:
        raise FileNotFoundError(
            f"cannot export {run_dir}: no checkpoint for {', '.join(missing)}; train them with "
            f"`unclip train STAGE --out {run_dir}`"
        )
    prior, mean, std = load_trained_prior(stage_dir(run_dir, "prior"))
    cascade = [load_trained_upsampler(stage_dir(run_dir, s)) for s in _trained_optional(run_dir)]
    return Family(
        name=name,
        clip=load_trained_clip(stage_dir(run_dir, "clip")),
        prior=prior,
        prior_mean=mean.float(),
        prior_std=std.float(),
        decoder=load_trained_decoder(stage_dir(run_dir, "decoder")),
        upsampler=load_trained_upsampler(stage_dir(run_dir, "upsampler")),
        defaults=defaults or shapes_family_defaults(),
        cascade=tuple(cascade),
    )


def _trained_optional(run_dir: Path) -> list[str]:
    return [s for s in OPTIONAL_STAGES if (stage_dir(run_dir, s) / "checkpoint.pt").is_file()]


def read_summaries(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Per stage: its summary.json (metrics of its last finished run), with steps and wall
    minutes taken from the checkpoint, which is newer while a stage is still training."""
    out: dict[str, dict[str, Any]] = {}
    for stage in (*STAGES, *_trained_optional(run_dir)):
        folder = stage_dir(run_dir, stage)
        path = folder / SUMMARY_NAME
        summary = json.loads(path.read_text()) if path.is_file() else {"stage": stage}
        if checkpoint_path(folder).is_file():
            state = load_checkpoint(checkpoint_path(folder))
            if state.step != summary.get("steps"):
                summary["metrics"] = {}  # they describe an earlier step
                summary.pop("final_loss_smooth", None)
            summary.update(steps=state.step, wall_minutes=round(state.elapsed_s / 60, 2))
        out[stage] = summary
    return out


NOTES_NAME = "card_notes.md"  # results and remarks of a run, appended to its model card


def export_family(run_dir: Path, dest: Path, *, dtype: torch.dtype = torch.float16) -> Path:
    """Write the family (fp16 safetensors by default), training_summary.json and MODEL_CARD.md.

    run_dir/card_notes.md, when present, is appended to the card (results, remarks).
    """
    run_dir = Path(run_dir)
    family = family_from_run(run_dir)
    root = save_family(family, dest, dtype=dtype)
    summaries = read_summaries(run_dir)
    summary = {"run_dir": str(run_dir), "stages": summaries}
    (root / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    notes_path = run_dir / NOTES_NAME
    notes = notes_path.read_text() if notes_path.is_file() else ""
    write_model_card(family, summaries, root, notes=notes)
    _check_size(root)
    return root


def _check_size(root: Path) -> None:
    size_mb = sum(p.stat().st_size for p in root.glob("*.safetensors")) / 2**20
    if size_mb > MAX_FAMILY_MB:
        raise ValueError(f"family weights in {root} take {size_mb:.1f} MB, over the "
                         f"{MAX_FAMILY_MB:.0f} MB allowed for a shipped family")


def add_cascade_upsampler(stage_folder: Path, family_dir: Path, *, steps: int | None = None,
                          dtype: torch.dtype = torch.float16) -> Path:
    """Add a trained cascade upsampler (e.g. run/upsampler256) to an existing family: writes
    upsampler{side}.json / .safetensors and family.json's native_sizes (and, with `steps`,
    defaults.cascade_steps); no other file changes, so the family's other weights (and
    their checksums) stay as they were."""
    pair = load_trained_upsampler(stage_folder)
    root = Path(family_dir)
    meta = json.loads((root / "family.json").read_text())
    sides = sorted(int(str(s).partition("x")[0])
                   for s in meta.get("native_sizes", [meta.get("native_size", "64x64")]))
    if pair.cfg.low_res_size != sides[0] or pair.cfg.image_size <= sides[0]:
        raise FamilyError(f"{stage_folder} upsamples {pair.cfg.low_res_size} -> "
                          f"{pair.cfg.image_size}; the family's first upsampler makes {sides[0]}")
    name = f"upsampler{pair.cfg.image_size}"
    (root / f"{name}.json").write_text(json.dumps(pair.cfg.to_dict(), indent=2) + "\n")
    weights = {k: v.detach().to("cpu", dtype).contiguous() for k, v in pair.state_dict().items()}
    save_file(weights, str(root / f"{name}.safetensors"))
    sizes = sorted({*sides, pair.cfg.image_size})
    meta["native_sizes"] = [f"{s}x{s}" for s in sizes]
    meta["native_size"] = meta["native_sizes"][-1]
    if steps is not None:
        meta.setdefault("defaults", {}).setdefault("cascade_steps", {})[name] = steps
    ordered = {k: meta[k] for k in ("format", "name", "native_size", "native_sizes") if k in meta}
    (root / "family.json").write_text(json.dumps({**ordered, **meta}, indent=2) + "\n")
    _check_size(root)
    return root
