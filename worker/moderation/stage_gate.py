"""The worker's moderation gate: run a check, write its verdicts, hold or reject the job.

Fail closed: a checker that raises yields a hold verdict carrying the error, so nothing is
published until a reviewer looks. A stage stopped here raises ModerationStopped, which the
task skeleton treats like a cancel (the attempt is closed, the job is left as set here).

A hold or block is written at once, in a transaction of its own. With `defer_allowed` the
verdicts of a check that lets the job go on are returned instead, and the stage records them
(record_verdicts) in the transaction that completes it: one transaction fewer per check,
and an attempt that never completes leaves no allow rows (its retry checks again). A batch of
prior jobs encodes its prompts in one semantic call (prompt_checks_together).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import PIL.Image
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db import verdicts as ledger
from shared.db.claims import Claim, ImageRecord, add_images
from shared.db.enforcement import enforce_block
from shared.db.models import Job
from shared.db.states import JobStatus, transition
from shared.moderation.gate import lexical_checker_for, policy_for
from shared.moderation.policy import Enforcement
from shared.moderation.reasons import reason_for
from shared.moderation.verdict import Decision, Stage, Verdict, error_verdict, strictest
from shared.settings import Settings
from worker.moderation.image_checker import ImageChecker
from worker.moderation.semantic import SemanticChecker
from worker.moderation.text_encoders import make_text_encoder
from worker.tasks.progress import JobCancelled
from worker.unclip.family import Family

log = logging.getLogger(__name__)


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
        return [
            error_verdict(
                stage=stage,
                checker=checker,
                checker_version="error",
                policy_version=policy_version,
                error=message,
            )
        ]


def record_verdicts(session: Session, job_id: str, verdicts: Sequence[Verdict]) -> None:
    """One ledger row per verdict, in the caller's transaction."""
    for verdict in verdicts:
        ledger.record_verdict(session=session, job_id=job_id, verdict=verdict)


def enforce(
    sessions: sessionmaker[Session],
    claim: Claim,
    verdicts: Sequence[Verdict],
    *,
    held_images: Sequence[ImageRecord] = (),
    rules: Enforcement = Enforcement(),
    defer_allowed: bool = False,
    on_stop: Callable[[Session], object] | None = None,
) -> list[Verdict]:
    """Record the verdicts; on hold or block stop the job (keeping images unpublished).

    A block also applies the policy's enforcement to the job's key (queued jobs cancelled,
    suspension after repeated blocks), in the same transaction; on either, `on_stop` writes
    there what the stopped stage keeps. With `defer_allowed`, verdicts that let the job go
    on are returned unwritten, for the caller's completing transaction; otherwise the result
    is empty.
    """
    found = reason_for(verdicts)
    if found is None and defer_allowed:
        return list(verdicts)
    decision = strictest(v.decision for v in verdicts)
    with sessions.begin() as session:
        record_verdicts(session, claim.job_id, verdicts)
        if found is None:
            return []
        reason = found.code
        target = JobStatus.rejected if decision is Decision.BLOCK else JobStatus.held
        if on_stop is not None:
            on_stop(session)
        if held_images:
            add_images(session, claim, held_images, publish=False)
        moved = transition(
            session,
            claim.job_id,
            [JobStatus(claim.stage.value)],
            target,
            status_reason=reason,
            worker_id=None,
            heartbeat_at=None,
        )
        if not moved:
            status = session.execute(select(Job.status).where(Job.id == claim.job_id)).scalar()
            log.warning("job %s: moderation %s found it %s", claim.job_id, decision, status)
        if decision is Decision.BLOCK:
            enforce_block(session=session, job_id=claim.job_id, rules=rules)
    raise ModerationStopped(claim.job_id, decision, reason)


# ---- a batch's prompts, encoded together --------------------------------------------------
# job id -> (prompt, lexical verdict, semantic verdict), for prompt_checks_together's block.
_prefetched: dict[str, tuple[str, Verdict, Verdict]] = {}


@contextmanager
def prompt_checks_together(
    settings: Settings, family: Family, jobs: Sequence[Job]
) -> Iterator[None]:
    """Within the block, check_prompt_and_input of these jobs (in any thread) takes its
    semantic verdict from one check_many over all their prompts, made here. Should that
    call fail, each job runs its own check as usual (which fails closed on its own)."""
    prompts = [(job.id, job.prompt) for job in jobs if job.prompt.strip()]
    if len(prompts) > 1:
        try:
            lexical = lexical_checker_for(settings.moderation_policy)
            lex = [lexical.check(prompt) for _, prompt in prompts]
            semantic = checkers_for(settings, family).semantic.check_many(
                [prompt for _, prompt in prompts], lexical=lex
            )
            with _lock:
                for (job_id, prompt), lv, sv in zip(prompts, lex, semantic, strict=True):
                    _prefetched[job_id] = (prompt, lv, sv)
        except Exception:
            log.warning("semantic check of a batch's %d prompts failed; each checks alone",
                        len(prompts), exc_info=True)  # fmt: skip
    try:
        yield
    finally:
        with _lock:
            for job_id, _ in prompts:
                _prefetched.pop(job_id, None)


def _semantic_verdict(
    settings: Settings, family: Family, job: Job, lexical: Verdict | None
) -> Verdict:
    """The prompt's semantic verdict: prefetched for its batch when it was, for this very
    prompt and lexical verdict, else checked now."""
    with _lock:
        ready = _prefetched.pop(job.id, None)
    if ready is not None and lexical is not None and ready[:2] == (job.prompt, lexical):
        return ready[2]
    return checkers_for(settings, family).semantic.check(job.prompt, lexical=lexical)


def skip_input_checks(sessions: sessionmaker[Session], job_id: str) -> bool:
    """A reviewer released this job: its prompt and input were judged, do not judge again."""
    with sessions() as session:
        return ledger.has_release(session=session, job_id=job_id)


def _enforcement(settings: Settings) -> Enforcement:
    try:
        return policy_for(settings.moderation_policy).enforcement
    except Exception:  # an unreadable policy already holds the job; enforce nothing more
        return Enforcement()


def _policy_version(settings: Settings) -> str:
    try:
        return policy_for(settings.moderation_policy).version
    except Exception:  # the verdict still gets written, naming the error
        return "unreadable"


def check_prompt_and_input(
    sessions: sessionmaker[Session],
    claim: Claim,
    settings: Settings,
    family: Family,
    job: Job,
    image: PIL.Image.Image | None,
    *,
    defer_allowed: bool = False,
) -> list[Verdict]:
    """Before the prior: the prompt (terms again, then meaning) and any input image; the
    verdicts left for the caller to record (see enforce's `defer_allowed`)."""
    if skip_input_checks(sessions, job.id):
        return []
    version = _policy_version(settings)
    verdicts: list[Verdict] = []
    if job.prompt.strip():
        lexical = run_check(
            lambda: [lexical_checker_for(settings.moderation_policy).check(job.prompt)],
            stage="prompt",
            checker="lexical",
            policy_version=version,
        )
        verdicts += lexical
        # The semantic stage judges the lexical stage's ambiguous matches in context.
        lexical_verdict = lexical[0] if lexical[0].checker_version != "error" else None
        verdicts += run_check(
            lambda: [_semantic_verdict(settings, family, job, lexical_verdict)],
            stage="prompt",
            checker="semantic",
            policy_version=version,
        )
    if image is not None:
        verdicts += run_check(
            lambda: checkers_for(settings, family).image.check([image], stage="input_image"),
            stage="input_image",
            checker="image",
            policy_version=version,
        )
    if not verdicts:
        return []
    return enforce(
        sessions, claim, verdicts, rules=_enforcement(settings), defer_allowed=defer_allowed
    )


def check_mix(
    sessions: sessionmaker[Session],
    claim: Claim,
    settings: Settings,
    family: Family,
    images: Sequence[PIL.Image.Image],
    mixed: torch.Tensor,
    *,
    defer_allowed: bool = False,
) -> list[Verdict]:
    """Before a mix is decoded (H-embed, issue 15): its image entries as input images, and
    the mixed embeddings (n, D) themselves against the image concepts; prompts are checked
    by check_prompt_and_input (the row's prompt holds them)."""
    if skip_input_checks(sessions, claim.job_id):
        return []
    version = _policy_version(settings)
    verdicts: list[Verdict] = []
    if images:
        verdicts += run_check(
            lambda: checkers_for(settings, family).image.check(list(images), stage="input_image"),
            stage="input_image", checker="image", policy_version=version,
        )  # fmt: skip
    verdicts += run_check(
        lambda: checkers_for(settings, family).image.check_embeddings(mixed, stage="input_image"),
        stage="input_image", checker="image", policy_version=version,
    )  # fmt: skip
    return enforce(
        sessions, claim, verdicts, rules=_enforcement(settings), defer_allowed=defer_allowed
    )


def check_outputs(
    sessions: sessionmaker[Session],
    claim: Claim,
    settings: Settings,
    family: Family,
    images: Sequence[PIL.Image.Image],
    records: Sequence[ImageRecord],
    edit: tuple[PIL.Image.Image, PIL.Image.Image | None] | None = None,
    *,
    defer_allowed: bool = False,
    on_stop: Callable[[Session], object] | None = None,
) -> list[Verdict]:
    """Before publishing: every output image, and for an edit (`edit` = its input image and
    mask) each output's repainted region; a hold or block keeps them all unpublished (and
    writes `on_stop` beside them)."""
    version = _policy_version(settings)
    verdicts = run_check(
        lambda: checkers_for(settings, family).image.check(list(images), stage="output_image"),
        stage="output_image",
        checker="image",
        policy_version=version,
    )
    if edit is not None:
        source, mask = edit
        verdicts += run_check(
            lambda: checkers_for(settings, family).image.check_edit(source, mask, list(images)),
            stage="edit_region",
            checker="image",
            policy_version=version,
        )
    return enforce(
        sessions, claim, verdicts, held_images=records, rules=_enforcement(settings),
        defer_allowed=defer_allowed, on_stop=on_stop,
    )  # fmt: skip
