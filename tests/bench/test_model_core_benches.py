"""The model-core benchmarks run end to end on the CPU at tiny sizes and write their JSON.

bench_model_core's --karlo-full path is meant for a GPU at full Karlo sizes; --tiny runs the
same code at tiny sizes, which is what can be checked here (the GPU figure is not measured).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench import bench_model_core


def _run(monkeypatch: pytest.MonkeyPatch, module: object, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["bench", *argv])
    assert module.main() == 0  # type: ignore[attr-defined]


def test_karlo_layout_path_runs_at_tiny_sizes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "core.json"
    _run(monkeypatch, bench_model_core, "--karlo-full", "--tiny", "--steps", "2,2,2",
         "--batches", "1,2", "--repeats", "1", "--json", str(out))  # fmt: skip
    result = json.loads(out.read_text())
    assert result["family"] == "karlo-tiny-random" and result["final_size"] == 64
    assert set(result["batches"]) == {"1", "2"}
    assert all(row["median_s"] > 0 for row in result["batches"].values())


def test_vs_diffusers_rows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    from bench.diffusers_reference import bench_vs_diffusers

    out = tmp_path / "vs.json"
    _run(monkeypatch, bench_vs_diffusers, "--configs", "karlo-tiny", "--steps", "2,2,2",
         "--batches", "1", "--repeats", "1", "--json", str(out))  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert [set(row) for row in rows] == [
        {"config", "batch", "diffusers_s_per_image", "ours_s_per_image"}
    ]
    assert rows[0]["diffusers_s_per_image"] > 0 and rows[0]["ours_s_per_image"] > 0


def test_diffusers_pipeline_has_our_sizes() -> None:
    pytest.importorskip("diffusers")
    from bench.diffusers_reference.bench_vs_diffusers import build_config

    family, pipe = build_config("karlo-tiny")
    images = pipe("a red cube", prior_num_inference_steps=2, decoder_num_inference_steps=2,
                  super_res_num_inference_steps=2).images  # fmt: skip
    assert images[0].size == (family.final_size, family.final_size)
    ours = sum(p.numel() for p in family.prior.parameters())
    assert abs(sum(p.numel() for p in pipe.prior.parameters()) - ours) < 0.01 * ours
