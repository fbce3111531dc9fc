"""The model card's reproduce commands spell out batch, learning rate and warm starts."""

from __future__ import annotations

from worker.training.model_card import reproduce_commands


def test_reproduce_commands_name_warm_starts_and_settings() -> None:
    summaries = {
        "clip": {"steps": 10, "batch_size": 128, "lr": 1e-3},
        "upsampler": {"steps": 5, "batch_size": 32, "lr": 5e-4, "init_from": "runs/old"},
        "prior": {"steps": 7},
        "decoder": {"steps": 9, "init_from": "runs/old"},
    }
    lines = reproduce_commands(summaries, run_dir="r", dest="d")
    assert lines[0] == ("unclip train clip --out r --steps 10 --threads 1 --batch-size 128 "
                        "--lr 0.001")
    assert lines[1].endswith("--batch-size 32 --lr 0.0005 --init runs/old")
    assert lines[2] == "unclip train prior --out r --steps 7 --threads 1"
    assert lines[3].endswith("--init runs/old")
    assert lines[4] == "unclip train decoder --out r --steps 9 --resume --export d"
