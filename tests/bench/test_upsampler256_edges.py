"""The 64 -> 256 bench's ShapeEval rows: the same prompts read at each output side."""

from __future__ import annotations

from pathlib import Path

from bench.upsampler256_edges import shapeeval_at_sizes
from worker.unclip.family import load_family


def test_shapeeval_rows_count_every_prompt_at_each_side(tiny_family_dir: Path) -> None:
    family = load_family(tiny_family_dir)
    report = shapeeval_at_sizes(family, 6, sides=(64, 128), batch_size=3)
    assert report["prompts"] == 6
    for side in ("64px", "128px"):
        row = report[side]
        assert row["one_object"]["n"] + row["two_objects"]["n"] == 6
        assert 0.0 <= row["one_object"]["all_right"] <= 1.0
        assert row["seconds_per_image"] > 0
        assert row["side_read"] == family.output_side(int(side[:-2]))
