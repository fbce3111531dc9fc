"""The API's prompt gate: the lexical check before anything is stored or enqueued.

A blocked prompt becomes a rejected job row (so reviewers see it with its verdict), with no
stored input and no queue message, and the client gets HTTP 400 content_policy_violation.
A prompt the terms would only hold goes on: the worker runs the same term check again
before the prior, with the semantic check, and holds the job there.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.orm import Session, sessionmaker

from api.job_request import JobRequest
from shared.db import jobs as job_store
from shared.db import verdicts as ledger
from shared.db.states import JobStatus, transition
from shared.errors import ContentPolicyViolation
from shared.moderation.gate import lexical_checker_for
from shared.moderation.verdict import Decision
from shared.settings import Settings

REASON_LENGTH = 64


def screen_prompt(
    factory: sessionmaker[Session], settings: Settings, checked: JobRequest,
    api_key_id: str | None = None,
) -> None:
    """Raise ContentPolicyViolation (after writing the rejected job and its verdict) on a block."""
    checker = lexical_checker_for(settings.moderation_policy)
    verdict = checker.check(checked.prompt)
    if verdict.decision is not Decision.BLOCK:
        return
    reason = (verdict.reason_code or "moderation_block")[:REASON_LENGTH]
    new_job = checked.new_job(input_image_key=None, mask_key=None, idempotency_key=None)
    with factory.begin() as session:
        job = job_store.create_job(
            session=session, job_in=_with_key(new_job, api_key_id)
        )
        transition(session, job.id, [JobStatus.queued], JobStatus.rejected, status_reason=reason)
        ledger.record_verdict(session=session, job_id=job.id, verdict=verdict)
        if checker.policy.cancel_queued_on_block:
            ledger.cancel_queued_for_key(session=session, api_key_id=api_key_id)
        job_id = job.id
    raise ContentPolicyViolation(
        "Your request was rejected by the content policy (categories: "
        f"{', '.join(verdict.flagged)}; policy {verdict.policy_version}); job {job_id} is "
        "recorded as rejected. Change the prompt; allowed: prompts that match no blocked "
        "category of the policy",
        param="prompt",
    )


def _with_key(new_job: job_store.NewJob, api_key_id: str | None) -> job_store.NewJob:
    return replace(new_job, api_key_id=api_key_id) if api_key_id else new_job
