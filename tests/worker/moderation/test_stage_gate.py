"""The worker's moderation gate: verdicts recorded; hold/block stops the job; errors hold it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import PIL.Image
import pytest
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db import jobs as job_store
from shared.db.claims import Claim, ImageRecord, claim_stage
from shared.db.models import Job, JobImage, ModerationVerdict
from shared.db.states import Stage, transition
from shared.settings import Settings
from worker.moderation import stage_gate
from worker.moderation.image_checker import ImageChecker
from worker.moderation.semantic import SemanticChecker
from worker.moderation.stage_gate import Checkers, ModerationStopped
from worker.tasks.progress import JobCancelled


class AxisEncoder:
    """A stand-in text encoder: "violent" on one axis, the red circle on another, exemplars of
    the other categories on a third."""

    name = "axis"

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        axes = [0 if "violent" in t else 2 if "red circle" in t else 1 for t in texts]
        return torch.nn.functional.one_hot(torch.tensor(axes), 3).float()


class DarkClip:
    """A stand-in CLIP: dark images sit on the concept's axis."""

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([[1.0, 0.0] for _ in prompts])

    def encode_image(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor:
        return torch.tensor(
            [[1.0, 0.0] if i.getpixel((0, 0)) == (0, 0, 0) else [0.0, 1.0] for i in images]
        )


@pytest.fixture
def fake_checkers(monkeypatch: pytest.MonkeyPatch, sqlite_settings: Settings) -> Checkers:
    from shared.moderation.gate import policy_for
    from shared.moderation.policy import ImageConcept

    policy = policy_for(sqlite_settings.moderation_policy)
    categories = dict(policy.categories)
    from dataclasses import replace

    categories["violence"] = replace(categories["violence"], exemplars=("violent",))
    policy = replace(
        policy,
        categories=categories,
        benign_exemplars=(),
        semantic_calibrated_for=("axis",),
        image_concepts=(ImageConcept("a black star", "violence", {"fake": 0.9}),),
    )
    checkers = Checkers(
        semantic=SemanticChecker(policy, AxisEncoder()),
        image=ImageChecker(policy, DarkClip(), "fake"),
    )
    monkeypatch.setattr(stage_gate, "checkers_for", lambda settings, family: checkers)
    return checkers


def _claimed(
    sessions: sessionmaker[Session], make_job: Callable[..., str], stage: Stage, **fields: Any
) -> tuple[Claim, Job]:
    job_id = make_job(**fields)
    with sessions.begin() as session:
        if stage is not Stage.prior:
            transition(session, job_id, ["queued"], Stage.prior)  # type: ignore[list-item]
            session.execute(
                Job.__table__.update().where(Job.id == job_id).values(status=stage.value)
            )
        claim = claim_stage(
            session, job_id=job_id, stage=stage, worker_id="w", stale_after_s=60, max_attempts=3
        )
    assert claim is not None
    with sessions() as session:
        return claim, session.get_one(Job, job_id)


def _state(sessions: sessionmaker[Session], job_id: str) -> tuple[Job, list[ModerationVerdict]]:
    with sessions() as session:
        rows = session.execute(select(ModerationVerdict).where(ModerationVerdict.job_id == job_id))
        return session.get_one(Job, job_id), list(rows.scalars())


def test_an_allowed_prompt_records_verdicts_and_goes_on(
    db_sessions: sessionmaker[Session],
    make_job: Callable[..., str],
    sqlite_settings: Settings,
    fake_checkers: Checkers,
) -> None:
    claim, job = _claimed(db_sessions, make_job, Stage.prior, prompt="a red circle")
    stage_gate.check_prompt_and_input(db_sessions, claim, sqlite_settings, None, job, None)  # type: ignore[arg-type]
    job, verdicts = _state(db_sessions, job.id)
    assert job.status == "prior"
    assert sorted(v.checker for v in verdicts) == ["lexical", "semantic"]
    assert all(v.decision == "allow" for v in verdicts)


def test_a_semantic_hold_stops_the_prior_and_holds_the_job(
    db_sessions: sessionmaker[Session],
    make_job: Callable[..., str],
    sqlite_settings: Settings,
    fake_checkers: Checkers,
) -> None:
    claim, job = _claimed(db_sessions, make_job, Stage.prior, prompt="something violent")
    with pytest.raises(ModerationStopped) as info:
        stage_gate.check_prompt_and_input(db_sessions, claim, sqlite_settings, None, job, None)  # type: ignore[arg-type]
    assert isinstance(info.value, JobCancelled)  # the task skeleton closes the attempt
    job, verdicts = _state(db_sessions, job.id)
    assert job.status == "held" and job.status_reason == "moderation_hold:prompt:violence"
    assert {v.checker: v.decision for v in verdicts} == {"lexical": "allow", "semantic": "hold"}


def test_a_checker_that_raises_holds_the_job(
    db_sessions: sessionmaker[Session],
    make_job: Callable[..., str],
    sqlite_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(settings: Settings, family: object) -> Checkers:
        raise RuntimeError("encoder weights missing")

    monkeypatch.setattr(stage_gate, "checkers_for", broken)
    claim, job = _claimed(db_sessions, make_job, Stage.prior, prompt="a red circle")
    with pytest.raises(ModerationStopped):
        stage_gate.check_prompt_and_input(db_sessions, claim, sqlite_settings, None, job, None)  # type: ignore[arg-type]
    job, verdicts = _state(db_sessions, job.id)
    assert job.status == "held" and job.status_reason == "moderation_hold:prompt:checker_error"
    [error] = [v for v in verdicts if v.decision == "hold"]
    assert "encoder weights missing" in str(error.matched_terms)


def test_a_failing_output_check_publishes_nothing(
    db_sessions: sessionmaker[Session],
    make_job: Callable[..., str],
    sqlite_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    fake_checkers: Checkers,
) -> None:
    def raising(images: Sequence[PIL.Image.Image], *, stage: str) -> list[Any]:
        raise RuntimeError("CUDA error: device-side assert")

    monkeypatch.setattr(fake_checkers.image, "check", raising)
    claim, job = _claimed(db_sessions, make_job, Stage.upsampler, n=2)
    images = [PIL.Image.new("RGB", (8, 8), (200, 0, 0)) for _ in range(2)]
    records = [ImageRecord(i, f"jobs/{job.id}/image-{i}.png", 8, 8) for i in range(2)]
    with pytest.raises(ModerationStopped):
        stage_gate.check_outputs(db_sessions, claim, sqlite_settings, None, images, records)  # type: ignore[arg-type]
    job, verdicts = _state(db_sessions, job.id)
    assert job.status == "held"
    with db_sessions() as session:
        assert job_store.images_for_job(session=session, job_id=job.id) == []
        stored = session.execute(select(JobImage).where(JobImage.job_id == job.id)).scalars()
        assert sorted(i.index for i in stored) == [0, 1]  # kept, unpublished, for the reviewer


def test_a_flagged_output_is_held_and_a_clean_one_is_not(
    db_sessions: sessionmaker[Session],
    make_job: Callable[..., str],
    sqlite_settings: Settings,
    fake_checkers: Checkers,
) -> None:
    claim, job = _claimed(db_sessions, make_job, Stage.upsampler)
    clean = [PIL.Image.new("RGB", (8, 8), (255, 255, 255))]
    stage_gate.check_outputs(
        db_sessions,
        claim,
        sqlite_settings,
        None,
        clean,  # type: ignore[arg-type]
        [ImageRecord(0, "k0", 8, 8)],
    )
    assert _state(db_sessions, job.id)[0].status == "upsampler"
    dark = [PIL.Image.new("RGB", (8, 8), (0, 0, 0))]
    with pytest.raises(ModerationStopped):
        stage_gate.check_outputs(
            db_sessions,
            claim,
            sqlite_settings,
            None,
            dark,  # type: ignore[arg-type]
            [ImageRecord(0, "k0", 8, 8)],
        )
    job, verdicts = _state(db_sessions, job.id)
    assert job.status == "held" and [v.decision for v in verdicts] == ["allow", "hold"]


def test_a_block_in_the_worker_applies_the_policy_enforcement_to_the_key(
    db_sessions: sessionmaker[Session], make_job: Callable[..., str]
) -> None:
    from shared.db.models import ApiKey, ModerationAction
    from shared.moderation.policy import Enforcement
    from shared.moderation.verdict import Decision, Verdict

    with db_sessions.begin() as session:
        key = ApiKey(name="worker-block", key_hash="w" * 64, prefix="p")
        session.add(key)
        session.flush()
        key_id = key.id
    waiting = make_job(api_key_id=key_id)
    claim, job = _claimed(db_sessions, make_job, Stage.prior, api_key_id=key_id)
    verdict = Verdict(
        stage="prompt",
        checker="semantic",
        checker_version="semantic/2",
        policy_version="t",
        decision=Decision.BLOCK,
        scores={"hate": 0.99},
        thresholds={"hate": 0.9},
        flagged=("hate",),
    )
    rules = Enforcement(cancel_queued_on_block=True, suspend_after_blocks=1)
    with pytest.raises(ModerationStopped):
        stage_gate.enforce(db_sessions, claim, [verdict], rules=rules)
    with db_sessions() as session:
        assert session.get_one(Job, job.id).status_reason == "moderation_block:prompt:hate"
        assert session.get_one(Job, waiting).status == "cancelled"
        assert session.get_one(ApiKey, key_id).suspended_at is not None
        actions = session.execute(select(ModerationAction.action)).scalars().all()
        assert sorted(actions) == ["cancel_queued", "suspend_key"]


NO_FAMILY: Any = None  # the fake checkers need no family


def test_deferred_allowed_verdicts_come_back_unwritten_for_the_completing_transaction(
    db_sessions: sessionmaker[Session],
    make_job: Callable[..., str],
    sqlite_settings: Settings,
    fake_checkers: Checkers,
) -> None:
    claim, job = _claimed(db_sessions, make_job, Stage.prior, prompt="a red circle")
    allowed = stage_gate.check_prompt_and_input(
        db_sessions, claim, sqlite_settings, NO_FAMILY, job, None, defer_allowed=True
    )
    assert sorted(v.checker for v in allowed) == ["lexical", "semantic"]
    assert _state(db_sessions, job.id)[1] == []  # nothing written yet
    with db_sessions.begin() as session:
        stage_gate.record_verdicts(session, job.id, allowed)
    job, verdicts = _state(db_sessions, job.id)
    assert job.status == "prior"
    assert sorted((v.checker, v.decision) for v in verdicts) == [
        ("lexical", "allow"),
        ("semantic", "allow"),
    ]


def test_a_deferred_hold_is_still_written_at_once_with_what_the_stage_keeps(
    db_sessions: sessionmaker[Session],
    make_job: Callable[..., str],
    sqlite_settings: Settings,
    fake_checkers: Checkers,
) -> None:
    claim, job = _claimed(db_sessions, make_job, Stage.upsampler)
    kept: list[str] = []
    dark = [PIL.Image.new("RGB", (8, 8), (0, 0, 0))]
    with pytest.raises(ModerationStopped):
        stage_gate.check_outputs(
            db_sessions, claim, sqlite_settings, NO_FAMILY, dark, [ImageRecord(0, "k0", 8, 8)],
            defer_allowed=True, on_stop=lambda session: kept.append(claim.job_id),
        )  # fmt: skip
    job, verdicts = _state(db_sessions, job.id)
    assert job.status == "held" and [v.decision for v in verdicts] == ["hold"]
    assert kept == [job.id]


class CountingEncoder(AxisEncoder):
    """AxisEncoder that counts its calls (one per semantic encode)."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        self.calls += 1
        return super().encode(texts)


def test_a_batch_of_prompts_is_encoded_once_with_the_verdicts_of_single_checks(
    db_sessions: sessionmaker[Session],
    make_job: Callable[..., str],
    sqlite_settings: Settings,
    fake_checkers: Checkers,
) -> None:
    encoder = CountingEncoder()
    fake_checkers.semantic.encoder = encoder
    prompts = ["a red circle", "something violent", "a blue square"]
    claimed = [_claimed(db_sessions, make_job, Stage.prior, prompt=p) for p in prompts]
    alone = []
    lexical_checker = stage_gate.lexical_checker_for(sqlite_settings.moderation_policy)
    for _, job in claimed:
        lexical = lexical_checker.check(job.prompt)
        alone.append(fake_checkers.semantic.check(job.prompt, lexical=lexical))
    encoder.calls = 0
    jobs = [job for _, job in claimed]
    together = []
    with stage_gate.prompt_checks_together(sqlite_settings, NO_FAMILY, jobs):
        assert encoder.calls == 1
        for claim, job in claimed:
            try:
                allowed = stage_gate.check_prompt_and_input(
                    db_sessions, claim, sqlite_settings, NO_FAMILY, job, None, defer_allowed=True
                )
            except ModerationStopped:  # written at once: read it back
                rows = _state(db_sessions, job.id)[1]
                together.append(next(v.decision for v in rows if v.checker == "semantic"))
                continue
            together.append(next(v.decision for v in allowed if v.checker == "semantic"))
    assert encoder.calls == 1  # no job encoded its prompt again
    assert together == [v.decision for v in alone]
    assert together[:2] == ["allow", "hold"]  # both endings were judged from the one encode
    assert stage_gate._prefetched == {}  # nothing left behind the block
