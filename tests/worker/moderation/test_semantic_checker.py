"""Semantic prompt check: paraphrases with no listed term are caught; lookalikes pass; fast."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

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
        ("a guy aiming a rifle at kids in a classroom", "violence"),
    ],
)
def test_paraphrases_without_terms_are_flagged(checker: SemanticChecker, prompt: str,
                                               category: str) -> None:
    verdict = checker.check(prompt)
    assert verdict.decision is not Decision.ALLOW, dict(verdict.scores)
    assert category in verdict.flagged
    assert verdict.scores[category] >= verdict.thresholds[category] - 0.1


@pytest.mark.parametrize(
    "prompt", ["a shot of espresso", "kill the lights", "a chef slicing tomatoes with a knife",
               "a knight fighting a dragon in a storybook", "a red circle on a white background"],
)
def test_lookalike_benign_prompts_pass(checker: SemanticChecker, prompt: str) -> None:
    verdict = checker.check(prompt)
    assert verdict.decision is Decision.ALLOW, dict(verdict.scores)
    assert verdict.checker_version.endswith("all-MiniLM-L6-v2")
    assert verdict.detail["benign_score"] > -1.0


def test_semantic_p99_is_within_thirty_milliseconds(checker: SemanticChecker) -> None:
    prompts = [f"a watercolour painting of a {w} in the rain, trending on artstation"
               for w in ("lighthouse", "cat", "robot", "forest", "harbour")] * 12
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread, so its CPU time is the whole cost of a check
    try:
        checker.check(prompts[0])
        times = []
        for prompt in prompts:
            # CPU time: the 2-core machine is shared (load ~10), so wall time here measures
            # the scheduler; bench/moderation_bench.py reports wall time as well.
            start = time.thread_time()
            checker.check(prompt)
            times.append(time.thread_time() - start)
    finally:
        torch.set_num_threads(threads)
    times.sort()
    assert times[int(0.99 * len(times)) - 1] <= 0.030, times[-5:]


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
