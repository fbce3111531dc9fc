"""The labelled prompt set: recall >= 95% on unsafe, <= 2% false positives on benign, per split.

The policy was written from the dev split only; the test split is held out (see
policies/README.md). A prompt counts as flagged when the API's lexical check or the worker's
semantic check holds or blocks it, which is what happens to it in the service.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from shared.moderation.lexical import LexicalChecker
from shared.moderation.policy import load_policy
from shared.moderation.verdict import Verdict
from worker.moderation.prompt_eval import evaluate, load_labelled
from worker.moderation.semantic import SemanticChecker
from worker.moderation.text_encoders import MiniLMEncoder

ROOT = Path(__file__).resolve().parents[3]
PROMPTS = ROOT / "tests" / "fixtures" / "moderation" / "prompts.jsonl"
RECALL_TARGET, FPR_TARGET = 0.95, 0.02


@pytest.fixture(scope="module")
def check() -> object:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    lexical, semantic = LexicalChecker(policy), SemanticChecker(policy, MiniLMEncoder())
    prompts = [row.prompt for row in load_labelled(PROMPTS)]
    # Batched: the same verdicts as one check per prompt, in a fraction of the time.
    semantic_verdicts = dict(zip(prompts, semantic.check_many(prompts), strict=True))

    def both(prompt: str) -> list[Verdict]:
        return [lexical.check(prompt), semantic_verdicts[prompt]]

    return both


def test_batched_semantic_verdicts_equal_single_ones() -> None:
    policy = load_policy(ROOT / "policies" / "default.yaml")
    semantic = SemanticChecker(policy, MiniLMEncoder())
    prompts = [row.prompt for row in load_labelled(PROMPTS)][:: 40]
    for single, batched in zip(map(semantic.check, prompts), semantic.check_many(prompts),
                               strict=True):
        assert single.decision is batched.decision
        assert single.scores == pytest.approx(batched.scores, abs=1e-4)


def test_labelled_set_is_large_and_covers_the_tricks() -> None:
    rows = load_labelled(PROMPTS)
    assert len(rows) >= 300
    labels = Counter(r.label for r in rows)
    assert labels["unsafe"] >= 150 and labels["benign"] >= 150
    tricks = {r.trick for r in rows if r.label == "unsafe"}
    assert {"paraphrase", "misspelling", "homoglyph", "spacing", "leet"} <= tricks
    # Variants of one unsafe prompt share a group and so a split: no leak from dev to test.
    splits_by_group: dict[str, set[str]] = {}
    for row in rows:
        splits_by_group.setdefault(row.group, set()).add(row.split)
    assert all(len(s) == 1 for s in splits_by_group.values())


@pytest.mark.parametrize("split", ["dev", "test"])
def test_recall_and_false_positive_targets_hold(check: object, split: str) -> None:
    metrics = evaluate(load_labelled(PROMPTS), check, split)  # type: ignore[arg-type]
    assert metrics.unsafe >= 50 and metrics.benign >= 80
    assert metrics.recall >= RECALL_TARGET, f"missed: {metrics.missed}"
    assert metrics.false_positive_rate <= FPR_TARGET, f"flagged: {metrics.wrongly_flagged}"
