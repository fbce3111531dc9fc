"""What a client sees of moderation on its job: the reason code and the appeal's state.

Category and stage only: matched terms, scores and thresholds stay in the admin ledger.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from shared.moderation.reasons import parse_reason


class ModerationPublic(BaseModel):
    """Why moderation held or rejected the job."""

    decision: Literal["hold", "block"]
    stage: str
    category: str
    reason_code: str


class AppealState(BaseModel):
    """The job's appeal, if one was filed."""

    id: str
    status: Literal["open", "upheld", "denied"]
    created_at: datetime
    decided_at: datetime | None


def moderation_public(status_reason: str | None) -> ModerationPublic | None:
    """The moderation reason in a job's status_reason, if it holds one."""
    reason = parse_reason(status_reason)
    if reason is None:
        return None
    return ModerationPublic(
        decision=reason.decision,  # type: ignore[arg-type]
        stage=reason.stage,
        category=reason.category,
        reason_code=reason.code,
    )


def appeal_state(job: Any) -> AppealState | None:
    """The appeal loaded through `job.appeal` (shared/db/models/appeal.py), if any."""
    appeal = getattr(job, "appeal", None)
    if appeal is None:
        return None
    return AppealState(
        id=appeal.id,
        status=appeal.status,
        created_at=appeal.created_at,
        decided_at=appeal.decided_at,
    )
