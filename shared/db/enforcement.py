"""Enforcement per key: a hard block cancels the key's queued jobs; N blocks suspend the key.

Every action is an append-only moderation_actions row (the ledger); lifting a suspension is
an admin's action, recorded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.db.base import utcnow
from shared.db.models import ApiKey, Job, ModerationAction, ModerationVerdict
from shared.db.states import STAGE_ORDER, JobStatus, transition
from shared.errors import Conflict, NotFound
from shared.moderation.policy import Enforcement

CANCELLED_BY_BLOCK = "cancelled_by_moderation_block"
SYSTEM_ACTOR = "moderation"
REASON_LENGTH = 512  # api_keys.suspended_reason


@dataclass(frozen=True)
class EnforcementOutcome:
    """What one hard block led to."""

    cancelled: list[str] = field(default_factory=list)
    suspended: bool = False
    blocks_in_window: int = 0


def record_action(
    *,
    session: Session,
    action: str,
    api_key_id: str | None,
    job_id: str | None,
    reason: str,
    actor: str,
    detail: dict[str, Any] | None = None,
) -> ModerationAction:
    """Append one enforcement row (flushed, not committed)."""
    row = ModerationAction(
        action=action,
        api_key_id=api_key_id,
        job_id=job_id,
        reason=reason,
        actor=actor,
        detail=detail or {},
    )
    session.add(row)
    session.flush()
    return row


def cancel_queued_for_key(
    *, session: Session, api_key_id: str | None, keep: str | None = None
) -> list[str]:
    """Cancel the key's jobs still waiting (all but `keep`): queued, or between stages with
    no worker holding them. Jobs running a stage are not chosen (one a worker claims in the
    same moment stops at its next step, as any cancelled job does)."""
    if api_key_id is None:
        return []
    between = Job.status.in_([stage.value for stage in STAGE_ORDER]) & Job.worker_id.is_(None)
    query = select(Job.id, Job.status).where(
        Job.api_key_id == api_key_id, (Job.status == JobStatus.queued) | between
    )
    cancelled = []
    for job_id, status in session.execute(query).all():
        if job_id != keep and transition(
            session,
            job_id,
            [JobStatus(status)],
            JobStatus.cancelled,
            status_reason=CANCELLED_BY_BLOCK,
        ):
            cancelled.append(job_id)
    return cancelled


def blocks_since(*, session: Session, api_key_id: str, since: datetime) -> int:
    """How many of the key's jobs got a block verdict since `since`."""
    query = (
        select(func.count(func.distinct(ModerationVerdict.job_id)))
        .join(Job, Job.id == ModerationVerdict.job_id)
        .where(
            Job.api_key_id == api_key_id,
            ModerationVerdict.decision == "block",
            ModerationVerdict.created_at >= since,
        )
    )
    return int(session.execute(query).scalar_one())


def enforce_block(
    *, session: Session, job_id: str, rules: Enforcement, now: datetime | None = None
) -> EnforcementOutcome:
    """After `job_id` was hard-blocked (its verdicts written): apply the policy to its key."""
    api_key_id = session.execute(select(Job.api_key_id).where(Job.id == job_id)).scalar()
    if api_key_id is None:
        return EnforcementOutcome()
    cancelled: list[str] = []
    if rules.cancel_queued_on_block:
        cancelled = cancel_queued_for_key(session=session, api_key_id=api_key_id, keep=job_id)
        if cancelled:
            record_action(
                session=session,
                action="cancel_queued",
                api_key_id=api_key_id,
                job_id=job_id,
                reason=f"hard block of job {job_id}",
                actor=SYSTEM_ACTOR,
                detail={"cancelled": cancelled},
            )
    if rules.suspend_after_blocks is None:
        return EnforcementOutcome(cancelled=cancelled)
    now = now or utcnow()
    since = now - timedelta(seconds=rules.suspend_window_s)
    # Blocks from before an admin lifted a suspension were judged then: they do not count again.
    lifted = session.execute(
        select(func.max(ModerationAction.created_at)).where(
            ModerationAction.api_key_id == api_key_id,
            ModerationAction.action == "unsuspend_key",
        )
    ).scalar()
    if lifted is not None and lifted > since:
        since = lifted
    count = blocks_since(session=session, api_key_id=api_key_id, since=since)
    if count < rules.suspend_after_blocks:
        return EnforcementOutcome(cancelled=cancelled, blocks_in_window=count)
    reason = (
        f"{count} hard moderation blocks within {rules.suspend_window_s:.0f} s "
        f"(limit {rules.suspend_after_blocks}); last: job {job_id}"
    )[:REASON_LENGTH]
    moved = session.execute(
        update(ApiKey)
        .where(ApiKey.id == api_key_id, ApiKey.suspended_at.is_(None))
        .values(suspended_at=now, suspended_reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if moved:
        record_action(
            session=session,
            action="suspend_key",
            api_key_id=api_key_id,
            job_id=job_id,
            reason=reason,
            actor=SYSTEM_ACTOR,
            detail={"blocks": count, "window_s": rules.suspend_window_s},
        )
    return EnforcementOutcome(cancelled=cancelled, suspended=bool(moved), blocks_in_window=count)


def unsuspend_key(*, session: Session, api_key_id: str, reason: str, actor: str) -> ApiKey:
    """An admin lifts a suspension; recorded as an unsuspend_key row."""
    key = session.get(ApiKey, api_key_id)
    if key is None:
        raise NotFound(f"no API key {api_key_id}", param="key_id")
    if key.suspended_at is None:
        raise Conflict(
            f"API key {api_key_id} is not suspended; only suspended keys can be unsuspended",
            param="key_id",
        )
    previous = key.suspended_reason
    key.suspended_at = None
    key.suspended_reason = None
    session.flush()
    record_action(
        session=session,
        action="unsuspend_key",
        api_key_id=api_key_id,
        job_id=None,
        reason=reason,
        actor=actor,
        detail={"was": previous},
    )
    return key


def actions_for_key(*, session: Session, api_key_id: str) -> list[ModerationAction]:
    """The key's enforcement rows, oldest first."""
    query = (
        select(ModerationAction)
        .where(ModerationAction.api_key_id == api_key_id)
        .order_by(ModerationAction.created_at, ModerationAction.id)
    )
    return list(session.execute(query).scalars())
