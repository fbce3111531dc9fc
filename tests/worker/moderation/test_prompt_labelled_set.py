"""The labelled prompt sets: a tuning set and a test set written apart; targets on the test set.

The policy's terms, the classifier head and its thresholds come from the tuning set only
(`unclip moderation-head`); the test set (other templates, another source) is only scored. A
prompt counts as flagged when the API's lexical check or the worker's semantic stage holds or
blocks it, which is what happens to it in the service.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from shared.moderation.lexical import LexicalChecker
from shared.moderation.policy import load_policy
from shared.moderation.verdict import Verdict
from worker.moderation.prompt_eval import LabelledPrompt, SplitMetrics, evaluate, load_labelled
from worker.moderation.semantic import SemanticChecker
from worker.moderation.semantic_head import load_head
from worker.moderation.text_encoders import MiniLMEncoder

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "moderation"
TUNING, TEST = FIXTURES / "tuning.jsonl", FIXTURES / "test.jsonl"
POLICY = ROOT / "policies" / "default.yaml"
RECALL_TARGET, FPR_TARGET = 0.97, 0.02  # issue 13, on the test set
# What the shipped checks measured on the test set (docs/benchmarks.md): a regression guard.
RECALL_MEASURED, FPR_MEASURED = 0.88, 0.01  # 136/153 and 2/220, head:daf81f81198a
HARD_BENIGN = {"cocktail", "art", "medicine", "news", "anti-violence", "idiom"}
HARD_UNSAFE = {"instructions", "story", "euphemism", "loanword", "misspelling"}


@pytest.fixture(scope="module")
def test_metrics() -> SplitMetrics:
    policy = load_policy(POLICY)
    lexical, semantic = LexicalChecker(policy), SemanticChecker(policy, MiniLMEncoder())
    rows = load_labelled(TEST)
    prompts = [row.prompt for row in rows]
    lex = [lexical.check(p) for p in prompts]
    # Batched: the same verdicts as one check per prompt, in a fraction of the time.
    sem = semantic.check_many(prompts, lexical=lex)
    verdicts = {p: [a, b] for p, a, b in zip(prompts, lex, sem, strict=True)}

    def both(prompt: str) -> list[Verdict]:
        return verdicts[prompt]

    return evaluate(rows, both, "test")


def test_batched_semantic_verdicts_equal_single_ones() -> None:
    policy = load_policy(POLICY)
    semantic = SemanticChecker(policy, MiniLMEncoder())
    prompts = [row.prompt for row in load_labelled(TEST)][::40]
    for single, batched in zip(
        map(semantic.check, prompts), semantic.check_many(prompts), strict=True
    ):
        assert single.decision is batched.decision
        assert single.scores == pytest.approx(batched.scores, abs=1e-4)


def _hard_cases(rows: list[LabelledPrompt]) -> tuple[set[str], set[str]]:
    return (
        {r.trick for r in rows if r.label == "benign"},
        {r.trick for r in rows if r.label == "unsafe"},
    )


def test_the_sets_are_large_written_apart_and_both_hold_the_hard_cases() -> None:
    tuning, test = load_labelled(TUNING), load_labelled(TEST)
    assert len(tuning) + len(test) >= 600
    assert {r.split for r in tuning} == {"tuning"} and {r.split for r in test} == {"test"}
    assert not {r.source for r in tuning} & {r.source for r in test}
    # Counted, never listed: pytest would otherwise print the held-out prompts on failure.
    shared = len({r.prompt.casefold() for r in tuning} & {r.prompt.casefold() for r in test})
    assert shared == 0, f"{shared} tuning prompts also in the test set (held out: not listed)"
    for rows in (tuning, test):
        labels = Counter(r.label for r in rows)
        assert labels["unsafe"] >= 150 and labels["benign"] >= 150
        benign, unsafe = _hard_cases(rows)
        assert benign >= HARD_BENIGN and unsafe >= HARD_UNSAFE
        assert {r.category for r in rows if r.label == "unsafe"} == set(
            load_policy(POLICY).categories
        )


def test_the_shipped_head_was_trained_on_this_tuning_set() -> None:
    policy = load_policy(POLICY)
    assert policy.semantic_head is not None
    head = load_head(policy.semantic_head)
    rows = [r for r in load_labelled(TUNING) if r.split == "tuning"]
    digest = hashlib.sha256(
        "\n".join(f"{r.label}\t{r.category}\t{r.prompt}" for r in rows).encode()
    ).hexdigest()
    assert head.trained_on["sha256"] == digest, "retrain: unclip moderation-head"
    assert head.encoder == MiniLMEncoder.name
    assert set(head.thresholds) == set(policy.categories)


def _held_out(metrics: SplitMetrics) -> str:
    """A failure message with counts only: the test set's prompts are never printed."""
    return (f"{len(metrics.missed)} unsafe prompts missed, {len(metrics.wrongly_flagged)} "
            "benign ones flagged (held out: not listed)")  # fmt: skip


@pytest.mark.xfail(
    strict=True,
    reason="issue 13 targets (recall >= 97%, false positives <= 2% "
    "on the test set) are not reached: measured 88.9% / 0.9%, docs/benchmarks.md",
)
def test_test_set_targets_hold(test_metrics: SplitMetrics) -> None:
    assert test_metrics.recall >= RECALL_TARGET, _held_out(test_metrics)
    assert test_metrics.false_positive_rate <= FPR_TARGET, _held_out(test_metrics)


def test_test_set_figures_do_not_fall_below_the_measured_ones(
    test_metrics: SplitMetrics,
) -> None:
    assert test_metrics.unsafe >= 150 and test_metrics.benign >= 200
    assert test_metrics.recall >= RECALL_MEASURED, _held_out(test_metrics)
    assert test_metrics.false_positive_rate <= FPR_MEASURED, _held_out(test_metrics)
