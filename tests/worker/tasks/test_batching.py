"""Dynamic batching through the real stage tasks in process (SQLite, tiny reference family)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from celery import Celery
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.db.base import utcnow
from shared.db.jobs import cancel_job
from shared.db.models import Job, JobImage, StageAttempt
from shared.db.states import Stage
from shared.settings import Batch, Settings
from shared.storage.local import LocalStorage
from worker.tasks import base, batching
from worker.tasks.app import register_tasks
from worker.tasks.base import RenderTask, Resources
from worker.unclip import decoder_stage
from worker.unclip.reference_family import make_reference_family
from worker.unclip.render_spec import RenderSpec, StageSteps, StepProgress

Sessions = sessionmaker[Session]


@dataclass
class Farm:
    """The three stage tasks on one SQLite database, with the queue as a list we deliver."""

    app: Celery
    settings: Settings
    sessions: Sessions
    storage: LocalStorage
    monkeypatch: pytest.MonkeyPatch
    queue: list[tuple[str, str]] = field(default_factory=list)

    def batch(self, max_jobs: int, wait_ms: int = 0) -> None:
        settings = self.settings.model_copy(update={"batch": Batch(max=max_jobs, wait_ms=wait_ms)})
        resources = Resources(settings, self.sessions, self.storage)
        self.monkeypatch.setattr(RenderTask, "_resources", resources)

    def deliver(self, job_id: str, stage: str) -> str:
        outcome: str = self.app.tasks[f"render.{stage}"].apply(kwargs={"job_id": job_id}).get()
        return outcome

    def run_all(self, job_ids: Sequence[str]) -> list[tuple[str, str, str]]:
        """Deliver each job's prior message, then every message published, in order."""
        self.queue.extend((job_id, "prior") for job_id in job_ids)
        delivered = []
        while self.queue:
            job_id, stage = self.queue.pop(0)
            delivered.append((job_id, stage, self.deliver(job_id, stage)))
        return delivered

    def job(self, job_id: str) -> Job:
        with self.sessions() as session:
            return session.get_one(Job, job_id)

    def pngs(self, job_id: str) -> list[bytes]:
        with self.sessions() as session:
            keys = session.scalars(
                select(JobImage.storage_key)
                .where(JobImage.job_id == job_id)
                .order_by(JobImage.index)
            ).all()
        return [self.storage.get_bytes(key) for key in keys]

    def attempts(self, job_id: str) -> list[tuple[str, str]]:
        with self.sessions() as session:
            rows = session.execute(
                select(StageAttempt.stage, StageAttempt.status)
                .where(StageAttempt.job_id == job_id)
                .order_by(StageAttempt.attempt)
            )
            return [(stage, status) for stage, status in rows]


@pytest.fixture
def farm(
    sqlite_settings: Settings,
    db_sessions: Sessions,
    tmp_path: Path,
    tiny_family_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Farm]:
    # Reproducible mode: batched jobs must give their unbatched bytes (batch_invariance.py).
    settings = sqlite_settings.model_copy(
        update={"family": tiny_family_dir, "device": "cpu", "reproducible": True}
    )
    storage = LocalStorage(tmp_path / "storage")
    app = register_tasks(Celery("test-batching", set_as_current=False))
    farm = Farm(app, settings, db_sessions, storage, monkeypatch)
    monkeypatch.setattr(
        base,
        "enqueue_stage",
        lambda app, job_id, stage, attempt, **_: farm.queue.append((job_id, str(stage))),
    )
    farm.batch(1)
    yield farm


def _four_jobs(make_job: Callable[..., str]) -> list[str]:
    # Prompts, seeds, n and guidance differ: guidance is per row in the library.
    return [
        make_job(
            prompt=f"a shape number {i}",
            seed=100 + i,
            n=1 + i % 2,
            prior_guidance=1.5 + i,
            decoder_guidance=2.0 + i,
        )  # fmt: skip
        for i in range(4)
    ]


def _unbatched_pngs(farm: Farm, make_job: Callable[..., str]) -> list[list[bytes]]:
    farm.batch(1)
    reference = _four_jobs(make_job)
    farm.run_all(reference)
    return [farm.pngs(job_id) for job_id in reference]


def test_four_waiting_jobs_render_as_one_batch_with_the_unbatched_images(
    farm: Farm, make_job: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _unbatched_pngs(farm, make_job)
    sizes: list[tuple[str, int]] = []
    monkeypatch.setattr(batching.metrics, "observe_batch", lambda s, n: sizes.append((s, n)))
    beside: list[tuple[str, object]] = []
    monkeypatch.setattr(batching, "record_stage_run", lambda s, o, _: beside.append((s, o)))
    farm.batch(4)
    jobs = _four_jobs(make_job)
    delivered = farm.run_all(jobs)
    # One shared library call per stage; the other jobs' own messages are no-ops.
    assert sizes == [("prior", 4), ("decoder", 4), ("upsampler", 4)]
    # The three jobs run beside each lead report their own stage metrics (Celery sees the lead).
    assert sorted(beside) == sorted([(s, "done") for s in ("prior", "decoder", "upsampler")] * 3)
    for stage in ("prior", "decoder", "upsampler"):
        outcomes = [outcome for _, s, outcome in delivered if s == stage]
        assert sorted(outcomes) == ["done", "duplicate", "duplicate", "duplicate"]
    for job_id, pngs in zip(jobs, expected, strict=True):
        assert farm.job(job_id).status == "succeeded"
        assert farm.attempts(job_id) == [
            ("prior", "succeeded"), ("decoder", "succeeded"), ("upsampler", "succeeded")
        ]  # fmt: skip
        assert len(pngs) == farm.job(job_id).n
        assert farm.pngs(job_id) == pngs  # bit for bit: reproducible mode on the CPU


def test_a_job_cancelled_mid_batch_stops_alone(
    farm: Farm, make_job: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _unbatched_pngs(farm, make_job)
    farm.batch(4)
    jobs = _four_jobs(make_job)
    victim = jobs[2]
    real = batching.STAGE_CALLS[Stage.decoder]

    def cancel_at_first_step(family: Any, specs: Any, inputs: Any, callback: Any) -> Any:
        def step(progress: StepProgress) -> None:
            if progress.step == 1 and len(specs) == 4:
                with farm.sessions.begin() as session:
                    cancel_job(session=session, job_id=victim)
            callback(progress)

        return real(family, specs, inputs, step)

    monkeypatch.setitem(batching.STAGE_CALLS, Stage.decoder, cancel_at_first_step)
    farm.run_all(jobs)
    assert farm.job(victim).status == "cancelled"
    assert farm.attempts(victim) == [("prior", "succeeded"), ("decoder", "cancelled")]
    assert farm.pngs(victim) == []
    for job_id, pngs in zip(jobs, expected, strict=True):
        if job_id != victim:
            assert farm.job(job_id).status == "succeeded"
            assert farm.pngs(job_id) == pngs


def test_a_failing_job_fails_alone(
    farm: Farm, make_job: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    farm.batch(4)
    jobs = _four_jobs(make_job)
    # One job's stored input goes bad before its decoder: it fails before the shared call.
    # Another breaks the library call itself: the batch is re-run job by job.
    bad_input, bad_call = jobs[1], jobs[3]
    real = batching.STAGE_CALLS[Stage.decoder]
    bad_prompt = farm.job(bad_call).prompt

    def failing(family: Any, specs: Sequence[RenderSpec], inputs: Any, callback: Any) -> Any:
        if any(spec.prompt == bad_prompt for spec in specs):
            raise RuntimeError("decoder exploded on this prompt")
        return real(family, specs, inputs, callback)

    monkeypatch.setitem(batching.STAGE_CALLS, Stage.decoder, failing)
    farm.queue.extend((job_id, "prior") for job_id in jobs)
    corrupted = False
    while farm.queue:
        job_id, stage = farm.queue.pop(0)
        if stage == "decoder" and not corrupted:  # the first decoder message leads the batch
            key = farm.job(bad_input).prior_output_key
            assert key is not None
            farm.storage.put_bytes(key, b"not safetensors", "application/octet-stream")
            corrupted = True
        farm.deliver(job_id, stage)
    statuses = {job_id: farm.job(job_id) for job_id in jobs}
    assert statuses[bad_input].status == "failed"
    assert statuses[bad_input].error_code == "invalid_input"
    assert statuses[bad_call].status == "failed"
    assert "exploded" in (statuses[bad_call].error_message or "")
    for job_id in (jobs[0], jobs[2]):
        assert statuses[job_id].status == "succeeded"


def test_only_compatible_jobs_join_a_batch(farm: Farm, make_job: Callable[..., str]) -> None:
    farm.batch(8)
    lead = make_job(seed=1, prior_guidance=2.0)
    same = make_job(seed=2, prompt="a blue square", prior_guidance=3.0, decoder_guidance=5.0)
    other_steps = make_job(seed=3, steps_prior=3, prior_guidance=2.0)
    other_sampler = make_job(seed=4, sampler="ddpm", prior_guidance=2.0)
    other_size = make_job(seed=5, size="128x128", prior_guidance=2.0)
    unguided = make_job(seed=6, prior_guidance=1.0)
    assert farm.deliver(lead, "prior") == "done"
    assert farm.job(same).status == "decoder"  # batched with the lead
    others = (other_steps, other_sampler, other_size, unguided)
    for job_id in others:
        assert farm.job(job_id).status == "queued"
        assert farm.attempts(job_id) == []
    # Their own messages find them untouched and render them.
    for job_id in others:
        assert farm.deliver(job_id, "prior") == "done"


def test_a_job_that_already_tried_the_stage_keeps_its_own_message(
    farm: Farm, make_job: Callable[..., str]
) -> None:
    """A job waiting out a retry's backoff is not pulled into someone else's batch."""
    farm.batch(4)
    lead = make_job(seed=1)
    retrying = make_job(seed=2)
    with farm.sessions.begin() as session:
        session.add(StageAttempt(job_id=retrying, stage="prior", attempt=1, worker_id="w:1",
                                 status="failed", started_at=utcnow()))  # fmt: skip
        session.execute(update(Job).where(Job.id == retrying).values(status="prior", attempt=1))
    assert farm.deliver(lead, "prior") == "done"
    assert farm.job(retrying).status == "prior" and farm.job(retrying).attempt == 1


def test_batched_decoder_at_full_speed_agrees_within_tolerance() -> None:
    """Where the library promises no bit-exactness (GPU kernels; here the default full-speed
    mode on the CPU), a batched row agrees with the same row alone within 1e-4 on [-1, 1]."""
    family = make_reference_family(device="cpu", dtype=torch.float32)
    assert not family.reproducible
    dim = family.prior_config.clip_dim
    specs = [
        RenderSpec(kind="generate", prompt=f"shape {i}", n=2, seed=i,
                   steps=StageSteps(prior=2, decoder=4, upsampler=2), decoder_guidance=1.0 + i)
        for i in range(4)
    ]  # fmt: skip
    embs = [torch.randn(2, dim, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    together = decoder_stage.run_decoder(family, specs, embs)
    for spec, emb, batched in zip(specs, embs, together, strict=True):
        [alone] = decoder_stage.run_decoder(family, [spec], [emb])
        assert torch.allclose(batched, alone, atol=1e-4, rtol=0)


def test_a_batch_encodes_its_prompts_once_and_records_each_jobs_verdicts_once(
    farm: Farm, make_job: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.db.models import ModerationVerdict
    from worker.moderation.semantic import SemanticChecker

    calls: list[int] = []
    check_many = SemanticChecker.check_many

    def counted(self: SemanticChecker, prompts: Sequence[str], **kwargs: Any) -> Any:
        calls.append(len(prompts))
        return check_many(self, prompts, **kwargs)

    monkeypatch.setattr(SemanticChecker, "check_many", counted)
    farm.batch(4)
    jobs = _four_jobs(make_job)
    farm.run_all(jobs)
    assert calls == [4]  # one encode for the batch's four prompts, none per job
    with farm.sessions() as session:
        for job_id in jobs:
            checkers = session.scalars(
                select(ModerationVerdict.checker).where(ModerationVerdict.job_id == job_id)
            ).all()
            n = farm.job(job_id).n
            assert farm.job(job_id).status == "succeeded"
            assert sorted(checkers) == sorted(["lexical", "semantic", *["image"] * n])


def test_batched_jobs_run_on_the_rows_their_claims_left_not_read_again(
    farm: Farm, make_job: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[bool] = []
    real = base.fully_loaded

    def spy(job: Job) -> bool:
        checked.append(real(job))
        return checked[-1]

    monkeypatch.setattr(base, "fully_loaded", spy)
    farm.batch(4)
    jobs = _four_jobs(make_job)
    farm.run_all(jobs)
    # Every job of every stage got its row from its claim, complete: none was read again.
    assert checked == [True] * 12
    assert all(farm.job(job_id).status == "succeeded" for job_id in jobs)
