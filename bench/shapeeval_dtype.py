"""ShapeEval's generation section (every prompt) on a family in one dtype, for fp32/bf16 pairs.

Usage, from the repository root (run once per dtype, then compare):
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.shapeeval_dtype --dtype float32 --json A.json
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.shapeeval_dtype --dtype bfloat16 --json B.json
    .venv/bin/python -m bench.shapeeval_dtype --compare A.json B.json

The full ShapeEval (`unclip eval`) also runs templates, variations, edits, retrieval and a
sampler-steps sweep; on a loaded CPU that is too long to run twice, so this runs only its
generation section (all 250 prompts, the family's defaults, prompt seeds = indices), which
holds the per-attribute accuracies. --compare prints both per attribute and the difference in
points, and how many prompts were read exactly alike in both dtypes.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch

from worker.evaluation.prompts import prompt_set
from worker.evaluation.sections import run_generation
from worker.evaluation.shapeeval import family_settings
from worker.shapes.analyser import analyse_image
from worker.unclip.family import load_family
from worker.unclip.render import render

ROOT = Path(__file__).resolve().parents[1]


def measure(family_dir: Path, dtype: str, limit: int | None) -> dict[str, Any]:
    family = load_family(family_dir, "cpu", getattr(torch, dtype))
    settings = family_settings(family.defaults, 16)
    prompts = prompt_set(limit)
    start = time.perf_counter()
    result, images = run_generation(partial(render, family), prompts, settings)
    readings = [repr(analyse_image(image)) for image in images]
    return {"dtype": dtype, "prompts": len(prompts), "wall_s": time.perf_counter() - start,
            "generation": asdict(result), "readings": readings}  # fmt: skip


def _classes(reading: str) -> str:
    return re.sub(r"\w+=-?[0-9.e-]+(, )?", "", reading)


def compare(a: dict[str, Any], b: dict[str, Any]) -> None:
    print(f"{'group.attribute':32s} {a['dtype']:>9s} {b['dtype']:>9s}  points")
    worst = 0.0
    for group, values in a["generation"].items():
        if not isinstance(values, dict):
            continue
        for key, x in values.items():
            if key == "n" or x is None or b["generation"][group][key] is None:
                continue
            y = b["generation"][group][key]
            diff = 100 * (y - x)
            worst = max(worst, abs(diff))
            print(f"{group + '.' + key:32s} {100 * x:9.1f} {100 * y:9.1f}  {diff:+.1f}")
    # Alike: the same classes (background, colour, shape, size, position), centres aside.
    same = sum(
        _classes(x) == _classes(y) for x, y in zip(a["readings"], b["readings"], strict=True)
    )
    print(f"largest difference: {worst:.1f} points; read alike: {same}/{len(a['readings'])}")
    print(f"wall: {a['wall_s']:.0f} s vs {b['wall_s']:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", type=Path, default=ROOT / "models/shapes")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--compare", nargs=2, type=Path, default=None, metavar=("A", "B"))
    args = parser.parse_args()
    if args.compare:
        a, b = (json.loads(path.read_text()) for path in args.compare)
        compare(a, b)
        return 0
    torch.set_num_threads(args.threads)
    out = measure(args.family, args.dtype, args.limit)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["generation"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
