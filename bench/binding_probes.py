"""Per-stage binding probes (issue 12): where does a two-object prompt lose its bindings?

    python -m bench.binding_probes --family models/shapes [--run runs/negclip12 ...] \
        [--n 200] [--stage-n 48] [--clip-only] [--out docs/bench/binding_probes.json]

Measures the family in --family, then each --run: the family with every stage that the run
folder holds a checkpoint for (RUN/<stage>/checkpoint.pt, EMA weights) swapped in. All models
are measured in one process, one after the other per probe, so machine load affects them alike.
- CLIP (worker/evaluation/binding_clip.py): per twin kind (colours swapped, shapes swapped,
  relation flipped), the cosine of a caption and its twin's, of a render and its twin's, and
  how often a render prefers its caption to the twin's (and a caption its render).
- Prior, decoder, small shapes (worker/evaluation/binding_stages.py), skipped for a run whose
  CLIP is new but whose prior or decoder is the family's: those were trained on the family's
  CLIP embeddings, so the numbers would measure a mismatch, not the stage (--mismatched runs
  them anyway, to see whether the old stages still work with the new CLIP).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from worker.evaluation.binding_clip import clip_binding, probe_scenes, train_colour_probe
from worker.evaluation.binding_stages import decoder_binding, prior_binding, small_shapes
from worker.training.checkpoint import checkpoint_path, load_checkpoint
from worker.training.train_clip import load_trained_clip
from worker.training.train_decoder import load_trained_decoder
from worker.training.train_prior import load_trained_prior
from worker.unclip.family import Family, load_family

SWAPPABLE = ("clip", "prior", "decoder")


@dataclass
class Model:
    label: str
    family: Family
    swapped_in: list[str]
    step: dict[str, int] = field(default_factory=dict)

    def stage_probes_valid(self, stage: str) -> bool:
        return "clip" not in self.swapped_in or stage in self.swapped_in


def _with_run(base: Family, run: Path) -> Model:
    family, swapped, steps = base, [], {}
    for stage in SWAPPABLE:
        path = checkpoint_path(run / stage)
        if not path.is_file():
            continue
        steps[stage] = load_checkpoint(path).step
        swapped.append(stage)
        if stage == "clip":
            family = replace(family, clip=load_trained_clip(run / stage))
        elif stage == "prior":
            prior, mean, std = load_trained_prior(run / stage)
            family = replace(family, prior=prior, prior_mean=mean.float(), prior_std=std.float())
        else:
            family = replace(family, decoder=load_trained_decoder(run / stage))
    if not swapped:
        raise SystemExit(f"--run {run}: no checkpoint in any of {run}/{{{','.join(SWAPPABLE)}}}")
    return Model(f"{base.name} + {run}", family, swapped, steps)


def _timed(records: dict[str, Any], key: str, fn: Any, *args: Any) -> Any:
    start = time.perf_counter()
    value = fn(*args)
    records.setdefault("seconds", {})[key] = round(time.perf_counter() - start, 1)
    return None if value is None else dataclasses.asdict(value)


def measure(
    models: list[Model], n: int, stage_n: int, clip_only: bool, mismatched: bool = False
) -> list[dict[str, Any]]:
    scenes = probe_scenes(n)
    out: list[dict[str, Any]] = [
        {"label": m.label, "swapped_in": m.swapped_in, "checkpoint_steps": m.step} for m in models
    ]
    probes = {}
    for model, record in zip(models, out, strict=True):
        probes[model.label] = train_colour_probe(model.family.clip)
        record["clip"] = _timed(
            record, "clip", clip_binding, model.family.clip, scenes, probes[model.label]
        )
    if clip_only:
        return out
    stage_scenes = scenes[:stage_n]
    runs = (
        ("prior", prior_binding, ("prior",)),
        ("decoder", decoder_binding, ("decoder",)),
        ("small_shapes", small_shapes, ("prior", "decoder")),
    )
    for key, fn, needs in runs:
        for model, record in zip(models, out, strict=True):
            valid = all(model.stage_probes_valid(s) for s in needs)
            if not valid:
                record.setdefault("mismatched" if mismatched else "skipped", []).append(key)
            if not valid and not mismatched:
                record[key] = None
                continue
            args: tuple[Any, ...] = (model.family, stage_scenes)
            if key == "prior":
                args += (probes[model.label],)
            elif key == "small_shapes":
                args = (model.family, stage_n)
            record[key] = _timed(record, key, fn, *args)
    return out


def _table(records: list[dict[str, Any]]) -> str:
    lines = []
    for r in records:
        clip = r["clip"]
        lines.append(f"{r['label']} (swapped in: {r['swapped_in'] or 'nothing'})")
        for kind in ("colours", "shapes", "relation"):
            lines.append(
                f"  {kind:<9} text cos {clip['text_cosine'][kind]:.3f}  image cos "
                f"{clip['image_cosine'][kind]:.3f}  image->caption "
                f"{clip['image_prefers_caption'][kind]:.1%}  caption->image "
                f"{clip['caption_prefers_image'][kind]:.1%}"
            )
        lines.append(f"  bound-colour linear probe {clip['bound_colour_probe']:.1%}")
        for key in ("prior", "decoder", "small_shapes"):
            if r.get(key):
                lines.append(
                    f"  {key}: "
                    + ", ".join(
                        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in r[key].items()
                    )
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", type=Path, default=Path("models/shapes"))
    parser.add_argument(
        "--run",
        type=Path,
        action="append",
        default=[],
        help="a training run folder whose stage checkpoints are swapped in",
    )
    parser.add_argument("--n", type=int, default=200, help="two-object scenes for CLIP probes")
    parser.add_argument(
        "--stage-n",
        type=int,
        default=48,
        help="scenes for each prior / decoder / small-shape probe",
    )
    parser.add_argument("--clip-only", action="store_true", help="CLIP probes only")
    parser.add_argument(
        "--mismatched",
        action="store_true",
        help="run the prior / decoder probes even where the run's CLIP is new to them "
        "(do the family's prior and decoder still work with the new CLIP?)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    base = load_family(args.family)
    models = [Model(str(args.family), base, [])] + [_with_run(base, r) for r in args.run]
    records = measure(models, args.n, args.stage_n, args.clip_only, args.mismatched)
    print(_table(records))
    report = {
        "command": "python -m bench.binding_probes " + " ".join(sys.argv[1:]),
        "finished_at_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "load_average": os.getloadavg(),
        "threads": args.threads,
        "models": records,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['wall_seconds']} s, load average {report['load_average']}")


if __name__ == "__main__":
    main()
