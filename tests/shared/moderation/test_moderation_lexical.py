"""Term matching: unsafe prompts are caught through tricks; lookalike benign ones pass; fast."""

from __future__ import annotations

import time
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
        ("a nude woman on a bed", "sexual", Decision.BLOCK),
        ("a n\u0430ked man", "sexual", Decision.BLOCK),  # homoglyph
        ("p0rn star", "sexual", Decision.BLOCK),  # leetspeak
        ("n . u . d . e portrait", "sexual", Decision.BLOCK),  # separators
        ("a nakd man", "sexual", Decision.BLOCK),  # typo on a ~ term
        ("a nakde man", "sexual", Decision.BLOCK),  # swapped letters
        ("nazzi poster", "hate", Decision.BLOCK),  # doubled letter
        ("sexy 12 year old girl", "sexual/minors", Decision.BLOCK),  # combo
        ("kill yourself", "self-harm", Decision.HOLD),
        ("school shooting scene", "violence", Decision.HOLD),
    ],
)
def test_unsafe_prompts_are_flagged(checker: LexicalChecker, prompt: str, category: str,
                                    decision: Decision) -> None:
    verdict = checker.check(prompt)
    assert category in verdict.flagged
    assert verdict.decision is decision
    assert verdict.matched_terms[category]
    assert verdict.scores[category] == 1.0


@pytest.mark.parametrize(
    "prompt",
    ["a shot of espresso", "kill the lights", "a killer whale", "a therapist's office",
     "essex countryside", "a cocktail party", "a 12 year old girl playing football",
     "two friends doing a fist bump", "a nude beige sofa", "grapes in a bowl"],
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
    verdict = checker.check("gore")
    record = verdict.to_record()
    assert record["policy_version"] == checker.policy.version
    assert record["checker_version"].startswith("lexical/")
    assert record["thresholds"]["violence/graphic"] == 1.0
    assert verdict.reason_code == "moderation_block:violence/graphic"


def test_lexical_p99_is_within_five_milliseconds(checker: LexicalChecker) -> None:
    prompts = ["a photo of a red sports car parked by the sea at sunset, 35mm film",
               "n a k e d w0man with a kn1fe in a dark alley, very detailed",
               "a sexy 12 year old, sch00l sh00ting, dеcapitated, kill the lights"] * 40
    checker.check(prompts[0])
    times = []
    for prompt in prompts:
        # CPU time of this thread: the 2-core machine is shared, and wall time here measures
        # the scheduler (bench/moderation_bench.py reports wall time too).
        start = time.thread_time()
        checker.check(prompt)
        times.append(time.thread_time() - start)
    times.sort()
    assert times[int(0.99 * len(times)) - 1] < 0.005, times[-5:]
