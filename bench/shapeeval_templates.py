"""ShapeEval's caption-template section alone: seen-template against unseen-template accuracy.

    python -m bench.shapeeval_templates --family models/shapes [--count 60] [--out FILE.json]

The same section `unclip eval` runs (worker/evaluation/sections.py: run_templates), at the
family's default settings, without the rest of ShapeEval.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from functools import partial
from pathlib import Path

import torch

from worker.evaluation.prompts import prompt_set, template_pairs
from worker.evaluation.report import template_lines
from worker.evaluation.sections import run_templates
from worker.evaluation.shapeeval import family_settings
from worker.unclip.family import load_family
from worker.unclip.render import render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", type=Path, default=Path("models/shapes"))
    parser.add_argument("--count", type=int, default=60, help="prompts, each in two templates")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    family = load_family(args.family)
    settings = family_settings(family.defaults, batch_size=16)
    pairs = template_pairs(prompt_set(), args.count)
    result = run_templates(partial(render, family), pairs, settings)
    print("\n".join(template_lines(result)))
    record = {
        "family": str(args.family),
        "count": len(pairs),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "load_average": os.getloadavg(),
        "templates": dataclasses.asdict(result),
    }
    print(f"{record['wall_seconds']} s, load average {record['load_average']}")
    if args.out is not None:
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
