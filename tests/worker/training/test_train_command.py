"""`unclip train`: clear argument errors, and a short run that trains and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["clip", "--out", "OUT"], "give a budget: --minutes M and/or --steps N"),
        (["clip", "--out", "OUT", "--minutes", "0"], "--minutes must be > 0, got 0.0"),
        (["prior", "--out", "OUT", "--steps", "-3"],
         "--steps must be >= 1 (or 0 with --init), got -3"),
        (["prior", "--out", "OUT", "--steps", "0"],
         "--steps must be >= 1 (or 0 with --init), got 0"),
        (["decoder", "--out", "OUT", "--steps", "1", "--batch-size", "1"],
         "--batch-size must be >= 2, got 1"),
        (["upsampler", "--out", "OUT", "--steps", "1", "--lr", "-1"], "--lr must be > 0, got -1"),
        (["upsampler", "--out", "OUT", "--steps", "1", "--l1-weight", "1"],
         "--l1-weight and --last-step-share apply to upsampler256, not 'upsampler'"),
        (["upsampler256", "--out", "OUT", "--steps", "1", "--last-step-share", "2"],
         "--last-step-share must be in [0, 1], got 2.0"),
    ],
)
def test_bad_values_are_named(argv: list[str], message: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("OUT", str(tmp_path / "run")) for a in argv]
    assert main(["train", *argv]) == 2
    assert message in capsys.readouterr().err


def test_out_must_be_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    assert main(["train", "clip", "--out", str(file), "--steps", "1"]) == 2
    assert f"--out {file} exists and is not a folder" in capsys.readouterr().err


def test_unknown_stage_lists_the_stages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "vae", "--out", "x", "--steps", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'vae'" in err
    assert all(f"'{stage}'" in err for stage in ("clip", "prior", "decoder", "upsampler", "all"))


def test_prior_without_clip_says_what_to_train(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "prior", "--out", str(tmp_path), "--steps", "1"]) == 2
    assert f"first run `unclip train clip --out {tmp_path}" in capsys.readouterr().err


def test_an_export_that_cannot_happen_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    assert main(["train", "clip", "--out", str(run), "--steps", "5", "--export",
                 str(tmp_path / "family")]) == 2  # fmt: skip
    assert "no checkpoint for prior, decoder, upsampler" in capsys.readouterr().err
    assert not (run / "clip" / "checkpoint.pt").exists()  # nothing was trained
    assert main(["train", "upsampler256", "--out", str(run), "--steps", "5", "--export",
                 str(tmp_path / "nowhere")]) == 2  # fmt: skip
    assert "not a model family folder" in capsys.readouterr().err
