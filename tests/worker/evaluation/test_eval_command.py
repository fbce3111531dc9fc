"""`unclip eval` end to end on the random-weight reference family (pipeline, not quality)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.cli import main
from worker.unclip.reference_family import save_reference_family


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_reference_family(tmp_path_factory.mktemp("family") / "reference")


def test_eval_writes_a_report_with_every_section(
    family_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    argv = [
        "eval",
        "--family",
        str(family_dir),
        "--out",
        str(out),
        "--limit",
        "4",
        "--ddpm-steps",
        "3",
        "--batch-size",
        "4",
        "--threads",
        "1",
        "--samples",
        str(tmp_path / "samples"),
    ]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["n_prompts"] == 4
    generation = report["generation"]
    assert generation["single_seen"]["n"] + generation["single_heldout"]["n"] == 2
    assert generation["two_seen"]["n"] + generation["two_heldout"]["n"] == 2
    assert 0.0 <= generation["single_all"]["colour"] <= 1.0
    assert report["variations"]["n"] == 2 and report["edits"]["n"] == 2
    assert report["edits"]["psnr_outside_mean"] > 0
    assert report["retrieval"]["n"] == 8 and report["retrieval"]["chance"] == 1 / 8
    assert [row["sampler"] for row in report["steps"]] == ["dpmpp_2m"] * 3 + ["ddpm"]
    assert report["steps"][-1]["steps"] == [3, 3, 4]
    assert report["settings"]["steps"] == [10, 10, 4]
    assert len(report["targets"]) == 14  # 10 of issue 4, 4 on unseen templates (issue 12)
    templates = report["templates"]
    assert templates["seen_single"]["n"] == templates["unseen_single"]["n"] == 2
    assert templates["seen_two"]["n"] == templates["unseen_two"]["n"] == 1
    readings = (tmp_path / "samples" / "readings.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in readings] == [0, 1, 2, 3]
    assert (tmp_path / "samples" / "grid.png").is_file()
    printed = capsys.readouterr().out
    assert "one object" in printed and "targets:" in printed


def test_eval_refuses_a_folder_without_a_family(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", "--family", str(tmp_path), "--out", str(tmp_path / "r.json")]) == 2
    assert "no family.json" in capsys.readouterr().err


def test_eval_refuses_a_bad_limit(
    family_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "--family", str(family_dir), "--out", str(tmp_path / "r.json"), "--limit", "0"]
    assert main(argv) == 2
    assert "--limit must be >= 1, got 0" in capsys.readouterr().err


def test_an_out_folder_and_an_incomplete_family_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from shared.cli import main as cli

    family = Path(__file__).resolve().parents[3] / "models" / "shapes"
    folder = tmp_path / "reports"
    folder.mkdir()
    assert cli(["eval", "--family", str(family), "--out", str(folder), "--limit", "1"]) == 2
    assert "is a folder" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(family, broken)
    (broken / "decoder.safetensors").unlink()
    out = tmp_path / "r.json"
    assert cli(["eval", "--family", str(broken), "--out", str(out), "--limit", "1"]) == 2
    assert "cannot be loaded" in capsys.readouterr().err and not out.exists()
