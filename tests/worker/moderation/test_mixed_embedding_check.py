"""A mix's embedding passes the image check as an image with that embedding would (issue 15)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
import yaml

from shared.moderation.policy import Policy, parse_policy
from shared.moderation.verdict import Decision
from worker.moderation.image_checker import ImageChecker
from worker.unclip.embedding_mix import mix_embeddings

ROOT = Path(__file__).resolve().parents[3]
CONCEPTS = [
    {"text": "a black star", "category": "violence", "thresholds": {"fake": 0.9}},
    {"text": "a bright thing", "category": "sexual", "thresholds": {"fake": 0.99}},
]


def _policy(concepts: list[dict[str, Any]]) -> Policy:
    data = yaml.safe_load((ROOT / "policies" / "default.yaml").read_text(encoding="utf-8"))
    data["image"] = {"concepts": concepts, "when_uncalibrated": "hold"}
    return parse_policy(data, source="test")


class DarkStarClip:
    """Dark images embed near "a black star", bright ones far from it."""

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([[1.0, 0.0] if "black" in p else [0.0, 1.0] for p in prompts])

    def encode_image(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor:
        darkness = [1.0 - np.asarray(i.convert("L"), np.float32).mean() / 255 for i in images]
        return torch.tensor([[d, 1.0 - d] for d in darkness])


def test_an_embedding_gets_the_verdict_of_an_image_that_embeds_to_it() -> None:
    checker = ImageChecker(_policy(CONCEPTS), DarkStarClip(), "fake")
    [from_image] = checker.check([PIL.Image.new("RGB", (8, 8), (0, 0, 0))], stage="input_image")
    [from_embedding] = checker.check_embeddings(torch.tensor([[1.0, 0.0]]), stage="input_image")
    assert from_embedding.decision is from_image.decision is Decision.HOLD
    assert from_embedding.scores == from_image.scores
    assert from_embedding.detail["region"] == "embedding"


def test_a_mix_leaning_on_a_flagged_concept_is_held_and_a_balanced_one_allowed() -> None:
    checker = ImageChecker(_policy(CONCEPTS), DarkStarClip(), "fake")
    star, bright = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    leaning = mix_embeddings([star, bright], [9.0, 1.0])  # 9 degrees from the star
    balanced = mix_embeddings([star, bright], [1.0, 1.0])  # 45 degrees from each
    held, allowed = checker.check_embeddings(torch.cat([leaning, balanced]), stage="input_image")
    assert held.decision is Decision.HOLD and held.flagged == ("violence",)
    assert allowed.decision is Decision.ALLOW and allowed.flagged == ()
    assert [v.detail["image_index"] for v in (held, allowed)] == [0, 1]
