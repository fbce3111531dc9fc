"""The model card's reproduce commands spell out batch, learning rate and warm starts."""

from __future__ import annotations

from pathlib import Path

from worker.training.model_card import render_model_card, reproduce_commands
from worker.unclip.family import load_family


def test_reproduce_commands_name_warm_starts_and_settings() -> None:
    summaries = {
        "clip": {"steps": 10, "batch_size": 128, "lr": 1e-3},
        "upsampler": {"steps": 5, "batch_size": 32, "lr": 5e-4, "init_from": "runs/old"},
        "prior": {"steps": 7, "seed": 0},
        "decoder": {"steps": 9, "init_from": "runs/old", "seed": 1},
    }
    lines = reproduce_commands(summaries, run_dir="r", dest="d")
    assert lines[0] == ("unclip train clip --out r --steps 10 --threads 1 --batch-size 128 "
                        "--lr 0.001")
    assert lines[1].endswith("--batch-size 32 --lr 0.0005 --init runs/old")
    assert lines[2] == "unclip train prior --out r --steps 7 --threads 1"
    assert lines[3].endswith("--seed 1 --init runs/old")
    assert lines[4] == "unclip train decoder --out r --steps 9 --resume --export d"


def test_card_table_says_where_each_stage_started(tiny_family_dir: Path) -> None:
    family = load_family(tiny_family_dir)
    summaries = {
        "clip": {"steps": 0, "batch_size": 128, "init_from": "runs/round2"},
        "prior": {"steps": 7, "batch_size": 64},
    }
    card = render_model_card(family, summaries)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in card.splitlines()
            if line.startswith("| ")}
    assert rows["clip"][2:4] == ["`runs/round2`", "0"]
    assert rows["prior"][2:4] == ["scratch", "7"]
    assert rows["decoder"][2:4] == ["scratch", "?"]
