"""MODEL_CARD.md of an exported family, written from the run's summaries and the configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from worker.unclip.family import Family


def _hardware(summaries: dict[str, Any]) -> str:
    """The machines the stages report (summary.json "hardware", "device")."""
    seen = sorted({f"{s.get('hardware', '?')} ({s.get('device', 'cpu')})"
                   for s in summaries.values() if "hardware" in s})
    return "; ".join(seen) or "not recorded"


def _params(module: nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f}M"


def _stage_rows(family: Family, summaries: dict[str, Any]) -> list[str]:
    nets = family.networks()
    rows = ["| stage | parameters | started from | steps | batch | wall minutes | final loss "
            "| metrics |",
            "|---|---|---|---|---|---|---|---|"]
    for stage, net in nets.items():
        s = summaries.get(stage, {})
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in s.get("metrics", {}).items())
        start = f"`{s['init_from']}`" if s.get("init_from") else "scratch"
        rows.append(f"| {stage} | {_params(net)} | {start} | {s.get('steps', '?')} | "
                    f"{s.get('batch_size', '?')} | {s.get('wall_minutes', '?')} | "
                    f"{_loss(s.get('final_loss_smooth'))} | {metrics} |")
    return rows


def reproduce_commands(summaries: dict[str, Any], run_dir: str = "runs/shapes",
                       dest: str = "models/shapes") -> list[str]:
    """The commands that retrain the same number of steps of every stage, then export.

    Batch size, learning rate and a seed other than 0 are spelled out, and `--init` names the
    family a stage was warm-started from (with `--steps 0`: adopted unchanged).
    """
    lines = []
    for stage in ("clip", "upsampler", "prior", "decoder"):
        s = summaries.get(stage, {})
        line = f"unclip train {stage} --out {run_dir} --steps {s.get('steps', 'N')} --threads 1"
        if "batch_size" in s:
            line += f" --batch-size {s['batch_size']}"
        if "lr" in s:
            line += f" --lr {s['lr']:g}"
        if s.get("seed"):
            line += f" --seed {s['seed']}"
        if s.get("init_from"):
            line += f" --init {s['init_from']}"
        lines.append(line)
    steps = summaries.get("decoder", {}).get("steps", "N")
    lines.append(f"unclip train decoder --out {run_dir} --steps {steps} --resume --export {dest}")
    return lines


def render_model_card(family: Family, summaries: dict[str, Any], *,
                      notes: str = "") -> str:
    """The card's markdown: what the family is, how it was trained, how well it does."""
    configs = {stage: cfg.to_dict() for stage, cfg in (
        ("clip", family.clip_config), ("prior", family.prior_config),
        ("decoder", family.decoder_config), ("upsampler", family.upsampler_config))}
    if "open_clip_config" in configs["clip"]:
        configs["clip"] = {**configs["clip"], "open_clip_config": "(see clip.json)"}
    parts = [
        f"# {family.name}: the shipped tiny unCLIP family of the shapes world", "",
        "Trained here from scratch on generated data (`worker/shapes/`): scenes of one or two "
        "flat shapes on a flat background with varied captions; held-out colour-shape pairs "
        "and two-object combinations are never shown in training (`worker/shapes/splits.py`). "
        "Final images are 64 px: the decoder paints 32 px, the upsampler doubles it.", "",
        "## Training", "",
        f"Hardware: {_hardware(summaries)}. Weights: EMA, exported as fp16 safetensors.",
        "", *_stage_rows(family, summaries), "",
        "## Configs", "", "```json", json.dumps(configs, indent=1), "```", "",
        "## Reproduce", "", "Data and noise of step k are seeded by (seed, k) and a resumed run "
        "continues exactly, so these commands retrain the same steps (wall time depends on "
        "the machine); a stage that names `--init` starts from that family's weights, and the "
        "notes below say where that family comes from:", "",
        "```", *reproduce_commands(summaries), "```", "",
    ]
    if notes:
        parts += [notes.strip(), ""]
    return "\n".join(parts)


def write_model_card(family: Family, summaries: dict[str, Any], dest: Path, *,
                     notes: str = "") -> Path:
    path = Path(dest) / "MODEL_CARD.md"
    path.write_text(render_model_card(family, summaries, notes=notes))
    return path


def _loss(value: float | None) -> str:
    """A stage's last smoothed loss; "-" for a stage that took no step (no loss recorded)."""
    return "-" if value is None else f"{value:.4f}"
