"""The outcome of one moderation check: scores, thresholds, matched terms and the decision."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

# edit_region: an edit's repainted region (its crop, and its difference from the input).
Stage = Literal["prompt", "input_image", "output_image", "edit_region"]
STAGES: tuple[Stage, ...] = ("prompt", "input_image", "output_image", "edit_region")


class Decision(StrEnum):
    """What happens to a job after a check; also the per-category action in the policy."""

    ALLOW = "allow"
    HOLD = "hold"
    BLOCK = "block"


_SEVERITY = {Decision.ALLOW: 0, Decision.HOLD: 1, Decision.BLOCK: 2}


def strictest(decisions: Iterable[Decision]) -> Decision:
    """The most severe of `decisions` (block > hold > allow); allow when there are none."""
    return max(decisions, key=_SEVERITY.__getitem__, default=Decision.ALLOW)


@dataclass(frozen=True)
class Verdict:
    """One check's explainable result, written to the ledger as one row."""

    stage: Stage
    checker: str  # "lexical" | "semantic" | "image"
    checker_version: str
    policy_version: str
    decision: Decision
    scores: Mapping[str, float]  # category (or concept) -> score
    thresholds: Mapping[str, float]  # same keys -> the threshold the score was compared to
    flagged: tuple[str, ...] = ()  # categories whose score reached their threshold
    matched_terms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)  # encoder, image index, ...

    @property
    def reason_code(self) -> str | None:
        """What a client is shown, e.g. "moderation_block:prompt:violence/graphic"; None if
        allowed (shared/moderation/reasons.py)."""
        from shared.moderation.reasons import reason_for

        reason = reason_for([self])
        return reason.code if reason else None

    def to_record(self) -> dict[str, Any]:
        """A JSON-ready dict of everything needed to explain the decision later."""
        return {
            "stage": self.stage,
            "checker": self.checker,
            "checker_version": self.checker_version,
            "policy_version": self.policy_version,
            "decision": self.decision.value,
            "scores": {k: round(float(v), 6) for k, v in self.scores.items()},
            "thresholds": {k: float(v) for k, v in self.thresholds.items()},
            "flagged": list(self.flagged),
            "matched_terms": {k: list(v) for k, v in self.matched_terms.items()},
            "detail": dict(self.detail),
        }


def error_verdict(
    *, stage: Stage, checker: str, checker_version: str, policy_version: str, error: str
) -> Verdict:
    """The fail-closed verdict of a checker that raised: hold, with the error recorded."""
    return Verdict(
        stage=stage,
        checker=checker,
        checker_version=checker_version,
        policy_version=policy_version,
        decision=Decision.HOLD,
        scores={},
        thresholds={},
        detail={"error": error[:500]},
    )
