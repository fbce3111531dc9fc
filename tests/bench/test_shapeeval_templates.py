"""The template-section bench runs on a family and writes both template groups."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench import shapeeval_templates


def test_bench_writes_seen_and_unseen_template_scores(
    tiny_family_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "templates.json"
    argv = ["shapeeval_templates.py", "--family", str(tiny_family_dir), "--count", "3"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out)])
    shapeeval_templates.main()
    templates = json.loads(out.read_text())["templates"]
    assert templates["seen_single"]["n"] == templates["unseen_single"]["n"] == 2
    assert templates["seen_two"]["n"] == templates["unseen_two"]["n"] == 1
