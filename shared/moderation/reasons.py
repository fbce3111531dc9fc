"""Reason codes a client may be shown: decision, stage and category; never terms or thresholds.

`moderation_<decision>:<stage>:<category>`, e.g. "moderation_block:prompt:violence/graphic",
kept in jobs.status_reason and parsed back into the public job's `moderation` object. The
matched terms, scores and thresholds stay in the ledger, which only admins read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared.moderation.verdict import STAGES, Decision, Verdict, strictest

PREFIX = "moderation_"
CHECKER_ERROR = "checker_error"
REASON_LENGTH = 64  # jobs.status_reason


@dataclass(frozen=True)
class ModerationReason:
    """The client's view of why moderation stopped a job."""

    decision: str  # hold | block
    stage: str  # prompt | input_image | output_image | edit_region
    category: str  # a policy category, or checker_error (a check failed; held to be safe)

    @property
    def code(self) -> str:
        return f"{PREFIX}{self.decision}:{self.stage}:{self.category}"[:REASON_LENGTH]


def reason_for(verdicts: Sequence[Verdict]) -> ModerationReason | None:
    """The strictest verdict's first flagged category and its stage; None when all allow."""
    worst = strictest(v.decision for v in verdicts)
    if worst is Decision.ALLOW:
        return None
    deciding = [v for v in verdicts if v.decision is worst]
    flagged = next((v for v in deciding if v.flagged), deciding[0])
    category = flagged.flagged[0] if flagged.flagged else CHECKER_ERROR
    return ModerationReason(worst.value, flagged.stage, category)


def parse_reason(status_reason: str | None) -> ModerationReason | None:
    """The reason in a status_reason written by `ModerationReason.code`, else None."""
    if not status_reason or not status_reason.startswith(PREFIX):
        return None
    head, _, rest = status_reason[len(PREFIX) :].partition(":")
    stage, _, category = rest.partition(":")
    if head not in ("hold", "block") or not category or stage not in (*STAGES, "edit_region"):
        return None
    return ModerationReason(head, stage, category)
