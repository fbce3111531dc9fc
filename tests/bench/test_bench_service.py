"""bench/bench_service.py: its --pipeline axis, and medians labelled by tree, pipeline and mode."""

from __future__ import annotations

import argparse

import pytest

from bench.bench_service import _env, _pipelines, summarise
from shared.settings import Settings


def test_pipeline_values_are_parsed_and_checked() -> None:
    assert _pipelines("1,2") == [1, 2]
    for bad in ("", "0,2", "1,-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="values of 1 or more"):
            _pipelines(bad)


def test_the_service_gets_the_pipeline_it_runs_with() -> None:
    settings = Settings(data_dir="/tmp/x", family="/tmp/f", database_url="sqlite:///x.db")
    assert _env(settings, 1, 2)["UNCLIP_PIPELINE"] == "2"
    assert _env(settings, 8)["UNCLIP_BATCH__MAX"] == "8"


def _row(pipeline: int, batch: int, repeat: int, images_per_s: float) -> dict[str, object]:
    return {"repeat": repeat, "mode": "embedded", "batch_max": batch, "pipeline": pipeline,
            "service_images_per_s": images_per_s, "service_vs_bare": images_per_s / 4,
            "cpu_bare_vs_service": 0.5, "service_cpu_s_per_image": 0.2}  # fmt: skip


def test_medians_are_kept_apart_per_pipeline() -> None:
    rows = [_row(p, b, r, v) for p, b, r, v in [
        (1, 1, 0, 2.0), (1, 8, 0, 3.0), (2, 1, 0, 3.0), (2, 8, 0, 3.6),
        (1, 1, 1, 2.2), (1, 8, 1, 2.8), (2, 1, 1, 3.2), (2, 8, 1, 4.0),
    ]]  # fmt: skip
    out = summarise(rows)
    assert out["pipeline1_embedded_batch1_vs_bare"] == pytest.approx(0.525, abs=0.006)
    assert out["pipeline2_embedded_batch1_vs_bare"] == pytest.approx(0.775, abs=0.006)
    assert out["pipeline2_embedded_batch8_vs_batch1"] == pytest.approx(1.225, abs=0.006)
