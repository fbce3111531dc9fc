"""Stage tasks and issue 15: embedding ids per image, variation by embedding, mixes, run records."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from celery import Celery
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.embeddings import record_embeddings
from shared.db.models import Job, JobImage, ModerationVerdict
from shared.db.models.embedding import Embedding
from shared.embedding_payload import vector_payload
from shared.job_params import StoredMixEntry
from shared.manifest import stage_runs
from shared.settings import Batch, Settings
from shared.storage.keys import input_key
from shared.storage.local import LocalStorage
from worker.tasks import base
from worker.tasks.app import register_tasks
from worker.tasks.base import RenderTask, Resources
from worker.tasks.payloads import decode_tensor
from worker.unclip.prior_stage import mix_part_seed
from worker.unclip.seeds import derive_seed

Sessions = sessionmaker[Session]


@pytest.fixture
def pipeline(
    sqlite_settings: Settings,
    db_sessions: Sessions,
    tmp_path: Path,
    tiny_family_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Callable[[str], list[str]], LocalStorage]]:
    """run(job_id) sends render.prior and follows every enqueued stage; returns the outcomes."""
    settings = sqlite_settings.model_copy(update={"family": tiny_family_dir, "device": "cpu"})
    storage = LocalStorage(tmp_path / "storage")
    monkeypatch.setattr(RenderTask, "_resources", Resources(settings, db_sessions, storage))
    queue: list[tuple[str, str]] = []
    monkeypatch.setattr(
        base, "enqueue_stage", lambda app, job_id, stage, attempt: queue.append((job_id, stage))
    )
    app = register_tasks(Celery("test-embedding-stages", set_as_current=False))

    def run(job_id: str) -> list[str]:
        outcomes = [app.tasks["render.prior"].apply(kwargs={"job_id": job_id}).get()]
        while queue:
            queued_id, stage = queue.pop(0)
            outcomes.append(app.tasks[f"render.{stage}"].apply(kwargs={"job_id": queued_id}).get())
        return outcomes

    yield run, storage


def _embeddings(sessions: Sessions, job_id: str) -> list[Embedding]:
    with sessions() as session:
        return list(
            session.scalars(
                select(Embedding)
                .where(Embedding.job_id == job_id)
                .order_by(Embedding.source.desc(), Embedding.index)
            )
        )


def _pngs(sessions: Sessions, storage: LocalStorage, job_id: str) -> list[bytes]:
    with sessions() as session:
        rows = session.scalars(
            select(JobImage).where(JobImage.job_id == job_id).order_by(JobImage.index)
        ).all()
    return [storage.get_bytes(r.storage_key) for r in rows]


def test_every_output_gets_an_embedding_id_and_each_stage_a_run_record(
    pipeline: Any, db_sessions: Sessions, make_job: Callable[..., str], tiny_family_dir: Path
) -> None:
    run, storage = pipeline
    job_id = make_job(n=2, seed=5)
    assert run(job_id) == ["done", "done", "done"]
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
    records = _embeddings(db_sessions, job_id)
    assert [(e.source, e.index, e.row) for e in records] == [("output", 0, 0), ("output", 1, 1)]
    assert {e.storage_key for e in records} == {job.prior_output_key}
    assert records[0].id != records[1].id and records[0].dim == 32

    runs = stage_runs(job.stage_runs)
    assert list(runs) == ["prior", "decoder", "upsampler"]
    assert [r.attempt for r in runs.values()] == [1, 2, 3]
    sums = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(tiny_family_dir.glob("*.safetensors"))
    }
    for stage, record in runs.items():
        # The default mode (full speed) is on record: rows are not batch-invariant then.
        assert (record.device, record.dtype, record.batch_jobs, record.batch_invariant,
                record.reproducible) == ("cpu", "float32", 1, False, False)  # fmt: skip
        assert record.family.weights == sums and sums
        assert record.steps == 2 and record.sampler == "ddim"
        if stage != "prior":
            assert record.seeds == [[derive_seed(5, stage, i)] for i in range(2)]
    prior = runs["prior"]
    assert len(prior.seeds) == 2 and prior.seeds[1][0] == derive_seed(5, "prior", 1, 0)
    assert runs["upsampler"].guidance is None and runs["prior"].guidance == 1.0


def test_a_retried_prior_leaves_one_set_of_embedding_ids(
    pipeline: Any, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    run, _ = pipeline
    job_id = make_job(n=1)
    with db_sessions.begin() as session:  # what an earlier attempt of the stage left behind
        job = session.get_one(Job, job_id)
        record_embeddings(session, job, storage_key="jobs/x/attempt-9/prior/e", dim=32,
                          variation_input=False)  # fmt: skip
    assert run(job_id) == ["done", "done", "done"]
    [record] = _embeddings(db_sessions, job_id)
    assert record.storage_key.endswith("attempt-1/prior/image_embeddings.safetensors")


def test_variation_of_an_embedding_decodes_that_embedding(
    pipeline: Any, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    run, storage = pipeline
    source = make_job(n=1, seed=3)
    assert run(source) == ["done", "done", "done"]
    [record] = _embeddings(db_sessions, source)
    vector = decode_tensor(storage.get_bytes(record.storage_key), stage="prior")[0].numpy()

    job_id = make_job(kind="variation", prompt="", n=2, seed=4)
    key = input_key(job_id, "embedding.safetensors")
    storage.put_bytes(key, vector_payload(vector), "application/x-safetensors")
    with db_sessions.begin() as session:
        job = session.get_one(Job, job_id)
        job.input_embedding_key, job.input_embedding_id = key, record.id
    assert run(job_id) == ["done", "done", "done"]
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
    assert job.status == "succeeded"
    assert job.prior_output_key is not None
    out = decode_tensor(storage.get_bytes(job.prior_output_key), stage="prior")
    assert torch.equal(out, torch.as_tensor(vector).expand(2, -1))
    # Outputs get ids of their own; no input record (the input is the given embedding).
    assert [e.source for e in _embeddings(db_sessions, job_id)] == ["output", "output"]
    assert len(_pngs(db_sessions, storage, job_id)) == 2


def test_variation_of_an_upload_records_its_input_embedding(
    pipeline: Any, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    run, storage = pipeline
    job_id = make_job(kind="variation", prompt="", n=1)
    key = input_key(job_id, "image.png")
    buffer = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    storage.put_bytes(key, buffer.getvalue(), "image/png")
    with db_sessions.begin() as session:
        session.get_one(Job, job_id).input_image_key = key
    assert run(job_id) == ["done", "done", "done"]
    assert [e.source for e in _embeddings(db_sessions, job_id)] == ["output", "input"]


def test_two_prompt_mix_renders_and_its_mixed_embedding_is_image_checked(
    pipeline: Any, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    run, storage = pipeline
    mix = [
        StoredMixEntry(weight=1.0, prompt="a red circle").model_dump(exclude_none=True),
        StoredMixEntry(weight=3.0, prompt="a blue square").model_dump(exclude_none=True),
    ]
    job_id = make_job(kind="mix", prompt="a red circle | a blue square", n=1, seed=8, mix=mix)
    assert run(job_id) == ["done", "done", "done"]
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
        stages = [
            (v.stage, v.checker)
            for v in session.scalars(
                select(ModerationVerdict).where(ModerationVerdict.job_id == job_id)
            )
        ]
    assert job.status == "succeeded"
    # The mixed embedding (one per image) went through the image check before decoding.
    assert stages.count(("input_image", "image")) == 1
    prior = stage_runs(job.stage_runs)["prior"]
    assert prior.mix_seeds == [mix_part_seed(8, 0), mix_part_seed(8, 1)]
    assert prior.mix_seeds[0] != prior.mix_seeds[1]
    assert prior.seeds[0][0] == derive_seed(prior.mix_seeds[0], "prior", 0, 0)
    assert len(_pngs(db_sessions, storage, job_id)) == 1


def test_run_records_say_the_batch_each_stage_ran_in(
    pipeline: Any,
    db_sessions: Sessions,
    make_job: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run, storage = pipeline
    res = RenderTask._resources
    assert res is not None
    batched = res.settings.model_copy(
        update={"batch": Batch(max=2, wait_ms=0), "reproducible": True}
    )
    monkeypatch.setattr(RenderTask, "_resources", Resources(batched, db_sessions, storage))
    first, second = make_job(n=1, seed=1), make_job(n=2, seed=2, prompt="a blue square")
    outcomes = run(first)
    # The lead's task runs each stage for both jobs; the second job's own messages are no-ops.
    assert outcomes == ["done", "done", "duplicate", "done", "duplicate"]
    for job_id in (first, second):
        with db_sessions() as session:
            job = session.get_one(Job, job_id)
        assert job.status == "succeeded"
        for record in stage_runs(job.stage_runs).values():
            assert (record.batch_jobs, record.batch_rows, record.batch_invariant,
                    record.reproducible) == (2, 3, True, True)  # fmt: skip


def test_a_lost_claim_cannot_write_its_run_record(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    from shared.db.claims import Claim
    from shared.db.states import Stage
    from worker.tasks.run_record import write_stage_run
    from worker.unclip.render_spec import RenderSpec

    job_id = make_job(status="decoder", attempt=5)
    spec = RenderSpec(kind="generate", prompt="p", n=1, seed=1)
    record = stage_run_for(spec, Claim(job_id, Stage.decoder, 4, "w-old"))
    with db_sessions.begin() as session:
        assert write_stage_run(session, Claim(job_id, Stage.decoder, 4, "w-old"), record) is False
        current = Claim(job_id, Stage.decoder, 5, "w-new")
        assert write_stage_run(session, current, record.model_copy(update={"attempt": 5}))
    with db_sessions() as session:
        runs = stage_runs(session.get_one(Job, job_id).stage_runs)
    assert runs["decoder"].attempt == 5


def test_a_run_record_written_from_the_claimed_row_is_one_update_keeping_the_others(
    db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    from sqlalchemy import event

    from shared.db.claims import Claim
    from shared.db.states import Stage
    from worker.tasks.run_record import write_stage_run
    from worker.unclip.render_spec import RenderSpec

    job_id = make_job(status="decoder", attempt=5)
    spec = RenderSpec(kind="generate", prompt="p", n=1, seed=1)
    current = Claim(job_id, Stage.decoder, 5, "w-new")
    prior = stage_run_for(spec, current).model_copy(update={"stage": "prior"})
    with db_sessions.begin() as session:
        assert write_stage_run(session, current, prior)
    with db_sessions() as session:
        row = session.get_one(Job, job_id)  # as a claim reads it
        session.expunge(row)
    statements: list[str] = []
    engine = db_sessions.kw["bind"]

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with db_sessions.begin() as session:
            assert write_stage_run(session, current, stage_run_for(spec, current), row)
            stale = Claim(job_id, Stage.decoder, 4, "w-old")  # a lost claim is still refused
            assert write_stage_run(session, stale, stage_run_for(spec, stale), row) is False
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert statements == ["UPDATE", "UPDATE"]  # no read of the column first
    with db_sessions() as session:
        runs = stage_runs(session.get_one(Job, job_id).stage_runs)
    assert set(runs) == {"prior", "decoder"} and runs["decoder"].attempt == 5


def stage_run_for(spec: Any, claim: Any) -> Any:
    from worker.tasks.run_record import stage_run
    from worker.unclip.reference_family import make_reference_family

    return stage_run(make_reference_family(), "/nonexistent", spec, "decoder", claim)


def test_a_mix_whose_embedding_the_image_policy_flags_is_held_before_decoding(
    pipeline: Any, db_sessions: Sessions, make_job: Callable[..., str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    run, storage = pipeline
    policies = Path(__file__).resolve().parents[3] / "policies"
    policy = yaml.safe_load((policies / "default.yaml").read_text(encoding="utf-8"))
    policy["semantic"]["head"] = str(policies / policy["semantic"]["head"])
    # Every image embedding reaches this threshold: whatever is image-checked is held.
    policy["image"] = {"when_uncalibrated": "allow", "concepts": [
        {"text": "a shape", "category": "violence", "thresholds": {"default": -1.0}}]}  # fmt: skip
    path = tmp_path / "strict.yaml"
    path.write_text(yaml.safe_dump(policy), encoding="utf-8")
    res = RenderTask._resources
    assert res is not None
    strict = res.settings.model_copy(update={"moderation_policy": path})
    monkeypatch.setattr(RenderTask, "_resources", Resources(strict, db_sessions, storage))
    mix = [StoredMixEntry(weight=1.0, prompt=p).model_dump(exclude_none=True)
           for p in ("a red circle", "a blue square")]  # fmt: skip
    job_id = make_job(kind="mix", prompt="a red circle | a blue square", mix=mix)
    assert run(job_id) == ["cancelled"]  # stopped in the prior: nothing decoded
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
    assert (job.status, job.decoder_output_key) == ("held", None)
    assert _embeddings(db_sessions, job_id) == []
