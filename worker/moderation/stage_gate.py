"""The worker's moderation gate: run a check, write its verdicts, hold or reject the job.

Fail closed: a checker that raises yields a hold verdict carrying the error, so nothing is
published until a reviewer looks. A stage stopped here raises ModerationStopped, which the
task skeleton treats like a cancel (the attempt is closed, the job is left as set here).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import PIL.Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db import verdicts as ledger
from shared.db.claims import Claim, ImageRecord, add_images
from shared.db.models import Job
from shared.db.states import JobStatus, transition
from shared.moderation.gate import lexical_checker_for, policy_for
from shared.moderation.verdict import Decision, Stage, Verdict, error_verdict, strictest
from shared.settings import Settings
from worker.moderation.image_checker import ImageChecker
from worker.moderation.semantic import SemanticChecker
from worker.moderation.text_encoders import make_text_encoder
from worker.tasks.progress import JobCancelled
from worker.unclip.family import Family

log = logging.getLogger(__name__)
REASON_LENGTH = 64  # jobs.status_reason


class ModerationStopped(JobCancelled):
    """Moderation held or rejected the job; the stage stops without output."""

    def __init__(self, job_id: str, decision: Decision, reason: str) -> None:
        super().__init__(f"job {job_id}: moderation {decision.value} ({reason})")
        self.decision = decision
        self.reason = reason


@dataclass
class Checkers:
    """The per-process checkers for one policy, text encoder and family."""

    semantic: SemanticChecker
    image: ImageChecker


_lock = threading.Lock()
_cache: dict[tuple[str, str, int], Checkers] = {}


def checkers_for(settings: Settings, family: Family) -> Checkers:
    """Built once per process (the exemplar and concept embeddings are computed here)."""
    key = (str(settings.moderation_policy), settings.moderation_text_encoder, id(family))
    with _lock:
        if key not in _cache:
            policy = policy_for(settings.moderation_policy)
            encoder = make_text_encoder(settings.moderation_text_encoder, clip=family.clip)
            _cache[key] = Checkers(
                semantic=SemanticChecker(policy, encoder),
                image=ImageChecker(policy, family.clip, family.clip.config.name),
            )
        return _cache[key]


def run_check(
    check: Callable[[], Sequence[Verdict]], *, stage: Stage, checker: str, policy_version: str
) -> list[Verdict]:
    """The check's verdicts, or one hold verdict naming the error if the check raised."""
    try:
        return list(check())
    except Exception as exc:  # fail closed: any checker failure holds the job
        log.exception("moderation %s check (%s) failed; holding the job", stage, checker)
        message = f"{type(exc).__name__}: {exc}"
        return [error_verdict(stage=stage, checker=checker, checker_version="error",
                              policy_version=policy_version, error=message)]


def reason_for(verdicts: Sequence[Verdict]) -> str:
    """A short code a client can show, e.g. "moderation_hold:violence"."""
    worst = strictest(v.decision for v in verdicts)
    flagged = [c for v in verdicts if v.decision is worst for c in v.flagged]
    first = flagged[0] if flagged else "checker_error"
    return f"moderation_{worst.value}:{first}"[:REASON_LENGTH]


def enforce(
    sessions: sessionmaker[Session],
    claim: Claim,
    verdicts: Sequence[Verdict],
    *,
    held_images: Sequence[ImageRecord] = (),
) -> None:
    """Record the verdicts; on hold or block stop the job (keeping images unpublished)."""
    decision = strictest(v.decision for v in verdicts)
    with sessions.begin() as session:
        for verdict in verdicts:
            ledger.record_verdict(session=session, job_id=claim.job_id, verdict=verdict)
        if decision is Decision.ALLOW:
            return
        reason = reason_for(verdicts)
        target = JobStatus.rejected if decision is Decision.BLOCK else JobStatus.held
        if held_images:
            add_images(session, claim, held_images, publish=False)
        moved = transition(session, claim.job_id, [JobStatus(claim.stage.value)], target,
                           status_reason=reason, worker_id=None, heartbeat_at=None)
        if not moved:
            status = session.execute(select(Job.status).where(Job.id == claim.job_id)).scalar()
            log.warning("job %s: moderation %s found it %s", claim.job_id, decision, status)
    raise ModerationStopped(claim.job_id, decision, reason)


def skip_input_checks(sessions: sessionmaker[Session], job_id: str) -> bool:
    """A reviewer released this job: its prompt and input were judged, do not judge again."""
    with sessions() as session:
        return ledger.has_release(session=session, job_id=job_id)


def _policy_version(settings: Settings) -> str:
    try:
        return policy_for(settings.moderation_policy).version
    except Exception:  # the verdict still gets written, naming the error
        return "unreadable"


def check_prompt_and_input(
    sessions: sessionmaker[Session], claim: Claim, settings: Settings, family: Family, job: Job,
    image: PIL.Image.Image | None,
) -> None:
    """Before the prior: the prompt (terms again, then meaning) and any input image."""
    if skip_input_checks(sessions, job.id):
        return
    version = _policy_version(settings)
    verdicts: list[Verdict] = []
    if job.prompt.strip():
        verdicts += run_check(
            lambda: [lexical_checker_for(settings.moderation_policy).check(job.prompt)],
            stage="prompt", checker="lexical", policy_version=version)
        verdicts += run_check(
            lambda: [checkers_for(settings, family).semantic.check(job.prompt)],
            stage="prompt", checker="semantic", policy_version=version)
    if image is not None:
        verdicts += run_check(
            lambda: checkers_for(settings, family).image.check([image], stage="input_image"),
            stage="input_image", checker="image", policy_version=version)
    if verdicts:
        enforce(sessions, claim, verdicts)


def check_outputs(
    sessions: sessionmaker[Session], claim: Claim, settings: Settings, family: Family,
    images: Sequence[PIL.Image.Image], records: Sequence[ImageRecord],
) -> None:
    """Before publishing: every output image; a hold or block keeps them all unpublished."""
    verdicts = run_check(
        lambda: checkers_for(settings, family).image.check(list(images), stage="output_image"),
        stage="output_image", checker="image", policy_version=_policy_version(settings))
    enforce(sessions, claim, verdicts, held_images=records)
