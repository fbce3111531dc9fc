"""Semantic prompt check: the head catches paraphrases with no listed term, judges ambiguous
terms in context, and lets lookalikes pass. (Latency: bench/moderation_bench.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shared.moderation.lexical import LexicalChecker
from shared.moderation.policy import Policy, load_policy
from shared.moderation.verdict import Decision
from worker.moderation import text_encoders
from worker.moderation.semantic import SemanticChecker
from worker.moderation.text_encoders import ClipTextEncoder, MiniLMEncoder, make_text_encoder

DEFAULT = Path(__file__).resolve().parents[3] / "policies" / "default.yaml"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(DEFAULT)


@pytest.fixture(scope="module")
def checker(policy: Policy) -> SemanticChecker:
    return SemanticChecker(policy, MiniLMEncoder())


@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("a lady with not a single thing on, lounging on the bed", "sexual"),
        ("the man's head was chopped off and there is blood all over", "violence/graphic"),
    ],
)
def test_paraphrases_without_terms_are_flagged(
    checker: SemanticChecker, prompt: str, category: str
) -> None:
    verdict = checker.check(prompt)
    assert verdict.decision is not Decision.ALLOW, dict(verdict.scores)
    assert category in verdict.flagged
    assert verdict.scores[category] >= verdict.thresholds[category] - 0.1


@pytest.mark.parametrize(
    "prompt",
    [
        "a shot of espresso",
        "kill the lights",
        "a chef slicing tomatoes with a knife",
        "a knight fighting a dragon in a storybook",
        "a red circle on a white background",
    ],
)
def test_lookalike_benign_prompts_pass(checker: SemanticChecker, prompt: str) -> None:
    verdict = checker.check(prompt)
    assert verdict.decision is Decision.ALLOW, dict(verdict.scores)
    assert "all-MiniLM-L6-v2" in verdict.checker_version
    assert verdict.detail["benign_score"] > -1.0


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a classical nude statue of Venus in a museum hall", None),
        ("a naked woman posing on a bed, explicit", "sexual"),
    ],
)
def test_an_ambiguous_term_is_judged_in_context(
    checker: SemanticChecker, prompt: str, expected: str | None
) -> None:
    lexical = LexicalChecker(checker.policy).check(prompt)
    assert "sexual" in lexical.detail["referred"] and lexical.decision is Decision.ALLOW
    verdict = checker.check(prompt, lexical=lexical)
    assert verdict.flagged == ((expected,) if expected else ()), dict(verdict.scores)
    assert verdict.detail["referred"] == ["sexual"]
    assert set(verdict.detail["exemplar_scores"]) == set(checker.policy.categories)
    assert verdict.checker_version.endswith(checker.head.version)  # type: ignore[union-attr]
    # The shipped head averages the network with its n-gram model; both are recorded.
    head = checker.head
    assert head is not None and head.ngram is not None
    ngram = verdict.detail["ngram_probability"]
    network = verdict.detail["unsafe_probability"]
    want = (1 - head.ngram_weight) * network + head.ngram_weight * ngram
    assert verdict.detail["unsafe_score"] == pytest.approx(want, abs=1e-5)


def test_without_minilm_the_family_clip_is_the_fallback(
    monkeypatch: pytest.MonkeyPatch, tiny_family_dir: Path, policy: Policy
) -> None:
    from worker.unclip.family import load_family

    clip = load_family(tiny_family_dir, device="cpu", dtype=torch.float32).clip
    monkeypatch.setattr(text_encoders, "minilm_available", lambda: False)
    encoder = make_text_encoder("minilm", clip=clip)
    assert isinstance(encoder, ClipTextEncoder)
    verdict = SemanticChecker(policy, encoder).check("a red circle")
    assert verdict.checker_version.endswith(f"clip:{clip.config.name}")
    assert set(verdict.scores) == set(policy.categories)
    # MiniLM thresholds mean nothing for CLIP: scores are kept, the policy's fallback decides.
    assert verdict.detail["calibrated"] is False
    assert verdict.decision is policy.semantic_when_uncalibrated
    with pytest.raises(ValueError, match="needs the family's CLIP"):
        make_text_encoder("minilm", clip=None)
    with pytest.raises(ValueError, match="'bert' is not one of 'minilm', 'clip'"):
        make_text_encoder("bert")
