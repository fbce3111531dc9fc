"""`unclip train upsampler256 --degradation`: checked, and handed to the stage's trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.cli import main
from worker.training import train_family


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["upsampler", "--degradation", "blur"],
            "--degradation applies to upsampler256, not 'upsampler'",
        ),
        (
            ["decoder", "--degradation", "bsr"],
            "--degradation applies to upsampler256, not 'decoder'",
        ),
    ],
)
def test_the_option_belongs_to_upsampler256(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", *argv, "--out", str(tmp_path / "run"), "--steps", "1"]) == 2
    assert message in capsys.readouterr().err


def test_an_unknown_degradation_lists_the_choices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "train",
                "upsampler256",
                "--out",
                str(tmp_path),
                "--steps",
                "1",
                "--degradation",
                "jpeg",
            ]
        )
    assert exc.value.code == 2
    assert "invalid choice: 'jpeg' (choose from 'blur', 'bsr')" in capsys.readouterr().err


class _Stop(Exception):
    pass


@pytest.mark.parametrize(("flags", "expected"), [(["--degradation", "blur"], "blur"), ([], None)])
def test_the_choice_reaches_the_trainer(
    flags: list[str], expected: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_train_stage(stage: str, run_dir: Path, opts: Any, **kwargs: Any) -> Any:
        seen.update(stage=stage, options=kwargs["options"])
        raise _Stop

    monkeypatch.setattr(train_family, "train_stage", fake_train_stage)
    with pytest.raises(_Stop):
        main(["train", "upsampler256", "--out", str(tmp_path), "--steps", "1", *flags])
    assert seen["stage"] == "upsampler256"
    assert seen["options"].get("degradation") == expected  # unset: the trainer's default
