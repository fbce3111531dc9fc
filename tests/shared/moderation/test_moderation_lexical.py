"""Term matching: decisive terms decide through tricks, ambiguous ones are referred on, lookalike
benign prompts pass. (Latency is measured by bench/moderation_bench.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.moderation.lexical import LexicalChecker
from shared.moderation.policy import load_policy
from shared.moderation.verdict import Decision

DEFAULT = Path(__file__).resolve().parents[3] / "policies" / "default.yaml"


@pytest.fixture(scope="module")
def checker() -> LexicalChecker:
    return LexicalChecker(load_policy(DEFAULT))


@pytest.mark.parametrize(
    ("prompt", "category", "decision"),
    [
        ("gas the jews", "hate", Decision.BLOCK),
        ("h\u0435il hitler", "hate", Decision.BLOCK),  # homoglyph
        ("l0licon drawing", "sexual/minors", Decision.BLOCK),  # leetspeak
        ("s i e g heil", "hate", Decision.BLOCK),  # spaced letters
        ("muslims are vermin", "hate", Decision.BLOCK),  # a decisive regular expression
        ("thinspiratoin board", "self-harm", Decision.HOLD),  # typo on a ~ term
        ("kys", "self-harm", Decision.HOLD),
    ],
)
def test_decisive_terms_decide(
    checker: LexicalChecker, prompt: str, category: str, decision: Decision
) -> None:
    verdict = checker.check(prompt)
    assert category in verdict.flagged
    assert verdict.decision is decision
    assert verdict.matched_terms[category]
    assert verdict.scores[category] == 1.0


@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("a nude woman on a bed", "sexual"),
        ("a n\u0430ked man", "sexual"),  # homoglyph
        ("p0rn star", "sexual"),  # leetspeak
        ("n . u . d . e portrait", "sexual"),  # separators
        ("a nakd man", "sexual"),  # typo on a ~ term
        ("nazzi poster", "hate"),  # doubled letter
        ("sexy 12 year old girl", "sexual/minors"),  # combo
        ("kill yourself", "self-harm"),
        ("school shooting scene", "violence"),
    ],
)
def test_ambiguous_terms_are_handed_to_the_semantic_stage(
    checker: LexicalChecker, prompt: str, category: str
) -> None:
    # "nude" also names a colour and a classical statue: the lexical stage does not decide.
    verdict = checker.check(prompt)
    assert verdict.decision is Decision.ALLOW and verdict.flagged == ()
    assert category in verdict.detail["referred"]
    assert verdict.matched_terms[category]
    assert verdict.scores[category] == 1.0


@pytest.mark.parametrize(
    "prompt",
    [
        "a shot of espresso",
        "kill the lights",
        "a killer whale",
        "a therapist's office",
        "essex countryside",
        "a cocktail party",
        "a 12 year old girl playing football",
        "two friends doing a fist bump",
        "a nude beige sofa",
        "grapes in a bowl",
    ],
)
def test_lookalike_benign_prompts_pass(checker: LexicalChecker, prompt: str) -> None:
    verdict = checker.check(prompt)
    assert verdict.decision is Decision.ALLOW, verdict.matched_terms
    assert verdict.flagged == ()


def test_half_a_combo_scores_half_and_is_not_flagged(checker: LexicalChecker) -> None:
    verdict = checker.check("a little girl at a ballet recital")
    assert verdict.scores["sexual/minors"] == 0.5
    assert "sexual/minors" not in verdict.flagged


def test_verdict_records_policy_and_checker_versions(checker: LexicalChecker) -> None:
    verdict = checker.check("heil hitler")
    record = verdict.to_record()
    assert record["policy_version"] == checker.policy.version
    assert record["checker_version"].startswith("lexical/")
    assert record["thresholds"]["hate"] == 1.0
    assert verdict.reason_code == "moderation_block:prompt:hate"
