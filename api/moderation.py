"""The API's prompt gate: the lexical check before anything is stored or enqueued.

Only the policy's decisive (unambiguous) terms decide here. A blocked prompt becomes a rejected
job row (so reviewers see it with its verdict), with no stored input and no queue message; the
policy's enforcement applies to the key (queued jobs cancelled, suspension after repeated
blocks), and the client gets HTTP 400 content_policy_violation naming the category and stage
(never the matched terms). An ambiguous match or a hold goes on: the worker runs the term
check again before the prior, with the semantic check, which judges it in context.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.orm import Session, sessionmaker

from api.job_request import JobRequest
from shared.db import jobs as job_store
from shared.db import verdicts as ledger
from shared.db.enforcement import enforce_block
from shared.db.states import JobStatus, transition
from shared.errors import ContentPolicyViolation
from shared.moderation.gate import lexical_checker_for
from shared.moderation.reasons import reason_for
from shared.moderation.verdict import Decision
from shared.settings import Settings


def screen_prompt(
    factory: sessionmaker[Session],
    settings: Settings,
    checked: JobRequest,
    api_key_id: str | None = None,
) -> None:
    """Raise ContentPolicyViolation (after writing the rejected job and its verdict) on a block."""
    checker = lexical_checker_for(settings.moderation_policy)
    verdict = checker.check(checked.prompt)
    found = reason_for([verdict])
    if verdict.decision is not Decision.BLOCK or found is None:
        return
    new_job = checked.new_job(input_image_key=None, mask_key=None)
    with factory.begin() as session:
        job = job_store.create_job(session=session, job_in=_with_key(new_job, api_key_id))
        transition(
            session, job.id, [JobStatus.queued], JobStatus.rejected, status_reason=found.code
        )
        ledger.record_verdict(session=session, job_id=job.id, verdict=verdict)
        enforce_block(session=session, job_id=job.id, rules=checker.policy.enforcement)
        job_id = job.id
    raise ContentPolicyViolation(
        f"Your request was rejected by the content policy ({found.code}: category "
        f"{found.category}, stage {found.stage}; policy {verdict.policy_version}); job {job_id} "
        f"is recorded as rejected and can be appealed (POST /v1/jobs/{job_id}/appeal). Change the "
        "prompt; allowed: prompts that match no blocked category of the policy",
        param="prompt",
    )


def _with_key(new_job: job_store.NewJob, api_key_id: str | None) -> job_store.NewJob:
    return replace(new_job, api_key_id=api_key_id) if api_key_id else new_job
