"""The three real stage tasks in process, on SQLite and the tiny reference family."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from celery import Celery
from PIL import Image, ImageDraw
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import Job, JobImage
from shared.settings import Settings
from shared.storage.keys import input_key
from shared.storage.local import LocalStorage
from worker.tasks import base
from worker.tasks.app import register_tasks
from worker.tasks.base import RenderTask, Resources
from worker.tasks.payloads import decode_tensor

Sessions = sessionmaker[Session]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


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
    app = register_tasks(Celery("test-stages", set_as_current=False))

    def run(job_id: str) -> list[str]:
        outcomes = [app.tasks["render.prior"].apply(kwargs={"job_id": job_id}).get()]
        while queue:
            queued_id, stage = queue.pop(0)
            outcomes.append(app.tasks[f"render.{stage}"].apply(kwargs={"job_id": queued_id}).get())
        return outcomes

    yield run, storage


def _images(sessions: Sessions, storage: LocalStorage, job_id: str) -> list[Image.Image]:
    with sessions() as session:
        rows = session.scalars(
            select(JobImage).where(JobImage.job_id == job_id).order_by(JobImage.index)
        ).all()
    return [Image.open(io.BytesIO(storage.get_bytes(r.storage_key))) for r in rows]


def test_generate_renders_n_pngs_at_the_requested_size(
    pipeline: Any, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    run, storage = pipeline
    job_id = make_job(n=2, size="128x128")
    assert run(job_id) == ["done", "done", "done"]
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
    assert (job.status, job.progress, job.progress_stage) == ("succeeded", 1.0, "upsampler")
    assert job.prior_output_key is not None and job.decoder_output_key is not None
    embeddings = decode_tensor(storage.get_bytes(job.prior_output_key), stage="prior")
    low_res = decode_tensor(storage.get_bytes(job.decoder_output_key), stage="decoder")
    assert embeddings.shape == (2, 32) and low_res.shape == (2, 3, 32, 32)
    images = _images(db_sessions, storage, job_id)
    assert [(im.format, im.size) for im in images] == [("PNG", (128, 128))] * 2
    assert not np.array_equal(np.asarray(images[0]), np.asarray(images[1]))


def test_edit_keeps_the_pixels_outside_the_mask(
    pipeline: Any, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    run, storage = pipeline
    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), mode="RGB")
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=(0, 0, 0, 0))  # alpha 0: repaint
    job_id = make_job(kind="edit", prompt="a blue square", size="64x64")
    image_key, mask_key = input_key(job_id, "image.png"), input_key(job_id, "mask.png")
    storage.put_bytes(image_key, _png(source), "image/png")
    storage.put_bytes(mask_key, _png(mask), "image/png")
    with db_sessions.begin() as session:
        job = session.get_one(Job, job_id)
        job.input_image_key, job.mask_key = image_key, mask_key
    assert run(job_id) == ["done", "done", "done"]
    [result] = _images(db_sessions, storage, job_id)
    keep = np.asarray(mask)[..., 3] == 255
    out, given = np.asarray(result.convert("RGB")), np.asarray(source)
    assert np.array_equal(out[keep], given[keep])
    assert not np.array_equal(out[~keep], given[~keep])


def test_missing_input_image_fails_the_job_with_its_reason(
    pipeline: Any, db_sessions: Sessions, make_job: Callable[..., str]
) -> None:
    run, _ = pipeline
    job_id = make_job(kind="variation", prompt="", input_image_key="jobs/x/inputs/image.png")
    assert run(job_id) == ["failed"]
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
    assert (job.status, job.error_code) == ("failed", "missing_input")
    assert "jobs/x/inputs/image.png" in (job.error_message or "")
