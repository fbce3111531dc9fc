"""A job's Nones are filled from its family's defaults, recorded, and render what `unclip
render` renders for the same prompt and seed."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from celery import Celery
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.cli import main
from shared.db.models import Job, JobImage
from shared.job_params import FAMILY_FILLED_COLUMNS, JobParams, ParamsUsed, params_from_row
from shared.settings import Settings
from shared.storage.local import LocalStorage
from worker.tasks import base
from worker.tasks.app import register_tasks
from worker.tasks.base import RenderTask, Resources
from worker.tasks.job_spec import build_spec, params_used
from worker.unclip.family import load_family

Sessions = sessionmaker[Session]
# Not the old settings defaults (10,10,4 / guidance 4 and 8): a job must take these.
DEFAULTS = {"steps": [2, 3, 2], "sampler": "ddim", "prior_guidance": 3.0,
            "decoder_guidance": 5.0, "prior_candidates": 1}  # fmt: skip
NULLS = dict.fromkeys(FAMILY_FILLED_COLUMNS)


@pytest.fixture
def family_dir(tiny_family_dir: Path, tmp_path: Path) -> Path:
    """The tiny family with sampling defaults of its own in family.json."""
    path = tmp_path / "family"
    shutil.copytree(tiny_family_dir, path)
    meta = json.loads((path / "family.json").read_text())
    meta["defaults"] = DEFAULTS
    (path / "family.json").write_text(json.dumps(meta))
    return path


@pytest.fixture
def run_job(
    sqlite_settings: Settings,
    db_sessions: Sessions,
    tmp_path: Path,
    family_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[str], list[Image.Image]]]:
    """Run a job through the three real stage tasks; its published images."""
    settings = sqlite_settings.model_copy(update={"family": family_dir, "device": "cpu"})
    storage = LocalStorage(tmp_path / "storage")
    monkeypatch.setattr(RenderTask, "_resources", Resources(settings, db_sessions, storage))
    queue: list[tuple[str, str]] = []

    def enqueue(app: Any, job_id: str, stage: str, attempt: int) -> None:
        queue.append((job_id, stage))

    monkeypatch.setattr(base, "enqueue_stage", enqueue)
    app = register_tasks(Celery("test-job-spec", set_as_current=False))

    def run(job_id: str) -> list[Image.Image]:
        assert app.tasks["render.prior"].apply(kwargs={"job_id": job_id}).get() == "done"
        while queue:
            queued_id, stage = queue.pop(0)
            assert app.tasks[f"render.{stage}"].apply(kwargs={"job_id": queued_id}).get() == "done"
        with db_sessions() as session:
            rows = session.scalars(select(JobImage).where(JobImage.job_id == job_id)
                                   .order_by(JobImage.index)).all()  # fmt: skip
            return [Image.open(io.BytesIO(storage.get_bytes(r.storage_key))) for r in rows]

    yield run


def _job(**fields: Any) -> Job:
    values: dict[str, Any] = {"id": "j", "kind": "generate", "prompt": "p", "n": 1, "seed": 9}
    return Job(**(values | NULLS | fields))


def test_nulls_take_the_family_defaults(family_dir: Path) -> None:
    family = load_family(family_dir)
    used = params_used(_job(), family)
    assert used.steps.model_dump() == {"prior": 2, "decoder": 3, "upsampler": 2}
    assert (used.sampler, used.prior_guidance, used.decoder_guidance) == ("ddim", 3.0, 5.0)
    assert (used.size, used.native_size, used.resized) == ("64x64", "64x64", False)
    spec = build_spec(_job(), LocalStorage(family_dir / "unused"), used)
    # The spec `unclip render` builds from the same family (worker/commands/render.py).
    d = family.defaults
    assert (spec.steps, spec.sampler) == (d.steps, d.sampler)
    assert (spec.prior_guidance, spec.decoder_guidance) == (d.prior_guidance, d.decoder_guidance)


def test_what_the_client_sent_wins_over_the_defaults(family_dir: Path) -> None:
    job = _job(steps_decoder=7, decoder_guidance=1.5, sampler="ddpm", size="256x256")
    used = params_used(job, load_family(family_dir))
    assert (used.steps.decoder, used.steps.prior) == (7, 2)
    assert (used.decoder_guidance, used.prior_guidance, used.sampler) == (1.5, 3.0, "ddpm")
    assert used.size == "256x256" and used.resized


def test_a_recorded_run_is_kept(family_dir: Path) -> None:
    recorded = params_used(_job(steps_prior=5), load_family(family_dir))
    job = _job(params_used=recorded.model_dump(mode="json"))
    assert params_used(job, load_family(family_dir)) == recorded


def test_api_job_renders_what_unclip_render_renders(
    run_job: Callable[[str], list[Image.Image]],
    make_job: Callable[..., str],
    db_sessions: Sessions,
    family_dir: Path,
    tmp_path: Path,
) -> None:
    prompt, seed = "a red circle", 1234
    job_id = make_job(prompt=prompt, seed=seed, **NULLS)
    [from_job] = run_job(job_id)
    with db_sessions() as session:
        job = session.get_one(Job, job_id)
        assert job.params_used is not None and job.steps_decoder is None  # asked: nothing
        used = ParamsUsed.model_validate(job.params_used)
    assert used.steps.decoder == 3 and used.decoder_guidance == 5.0
    out = tmp_path / "render.png"
    args = ["render", prompt, "--family", str(family_dir), "--seed", str(seed)]
    assert main([*args, "--device", "cpu", "-o", str(out)]) == 0
    with Image.open(out) as rendered:
        assert from_job.size == rendered.size == (64, 64)
        assert np.array_equal(
            np.asarray(from_job.convert("RGB")), np.asarray(rendered.convert("RGB"))
        )


def test_job_params_round_trip_through_the_row() -> None:
    asked = JobParams(prompt="p", seed=3, steps={"prior": 4}, decoder_guidance=2.0)
    row = _job(**asked.row_values())
    assert params_from_row(row) == asked
