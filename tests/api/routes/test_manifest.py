"""GET /v1/jobs/{id}/manifest and POST /v1/jobs/{id}/replay, with keys required."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from shared.db import api_keys as key_store
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import Job
from shared.job_params import STAGES
from shared.manifest import FamilyRecord, StageRun, with_stage_run
from shared.settings import Settings
from shared.storage.keys import input_key
from shared.storage.local import LocalStorage
from tests.api.conftest import RecordingQueue, image_bytes
from tests.api.keys_support import KEY_SECRET, keyed_settings

USED = {
    "family": "shapes", "native_size": "64x64", "size": "64x64", "seed": 41, "sampler": "ddim",
    "steps": {"prior": 3, "decoder": 4, "upsampler": 2}, "prior_guidance": 4.0,
    "decoder_guidance": 5.0,
}  # fmt: skip


def stage_run(stage: str, **changes: Any) -> StageRun:
    values: dict[str, Any] = dict(
        stage=stage, attempt=STAGES.index(stage) + 1, worker_id="w1", device="cpu",  # type: ignore[arg-type]
        machine="AMD EPYC", dtype="float32", batch_jobs=1, batch_rows=2, batch_invariant=True,
        steps=USED["steps"][stage], sampler="ddim",  # type: ignore[index]
        guidance=None if stage == "upsampler" else 4.0, seeds=[[10 + i, 20 + i] for i in range(2)],
        family=FamilyRecord(name="shapes", weights={"decoder.safetensors": "ef" * 32}),
        code_version="0.1.0",
    )  # fmt: skip
    values.update(changes)
    return StageRun.model_validate(values)


def all_runs(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] | None = None
    for stage in STAGES:
        raw = with_stage_run(raw, stage_run(stage, **changes))
    assert raw is not None
    return raw


@dataclass
class Keyed:
    client: TestClient
    storage: LocalStorage
    sessions: sessionmaker[Session]
    queue: RecordingQueue
    a: dict[str, str]
    b: dict[str, str]

    def succeeded(self, body: dict[str, Any], **row: Any) -> str:
        """A job of key a, moved to succeeded with a full run record (or what `row` says)."""
        created = self.client.post("/v1/jobs", json=body, headers=self.a)
        assert created.status_code == 202, created.text
        job_id = str(created.json()["id"])
        values: dict[str, Any] = {"status": "succeeded", "params_used": USED,
                                  "stage_runs": all_runs(), **row}  # fmt: skip
        with self.sessions.begin() as session:
            job = session.get_one(Job, job_id)
            for name, value in values.items():
                setattr(job, name, value)
        return job_id


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[Keyed]:
    settings: Settings = keyed_settings(tmp_path / "var", require_api_keys=True)
    storage = LocalStorage(settings.data_dir / "storage")
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        a = key_store.create_key(session=session, server_secret=KEY_SECRET, name="a").secret
        b = key_store.create_key(session=session, server_secret=KEY_SECRET, name="b",
                                 max_active_jobs=1).secret  # fmt: skip
    queue = RecordingQueue()
    with TestClient(create_app(settings, storage=storage, queue=queue)) as client:
        yield Keyed(client, storage, sessions, queue, {"Authorization": f"Bearer {a}"},
                    {"Authorization": f"Bearer {b}"})  # fmt: skip
    engine.dispose()


def test_manifest_gives_each_images_seeds_and_what_each_stage_ran_with(keyed: Keyed) -> None:
    job_id = keyed.succeeded({"prompt": "a red circle", "n": 2, "seed": 41})
    response = keyed.client.get(f"/v1/jobs/{job_id}/manifest", headers=keyed.a)
    assert response.status_code == 200, response.text
    manifest = response.json()
    assert (manifest["job_id"], manifest["seed"], manifest["n"]) == (job_id, 41, 2)
    assert list(manifest["stages"]) == ["prior", "decoder", "upsampler"]
    second = manifest["images"][1]
    assert second["index"] == 1
    assert second["stages"]["decoder"]["seeds"] == [11, 21]
    decoder = second["stages"]["decoder"]
    assert (decoder["steps"], decoder["sampler"], decoder["device"], decoder["dtype"]) == (
        4, "ddim", "cpu", "float32",
    )  # fmt: skip
    assert decoder["family"] == {"name": "shapes", "weights": {"decoder.safetensors": "ef" * 32}}
    assert (decoder["batch_jobs"], decoder["batch_invariant"]) == (1, True)
    assert second["stages"]["upsampler"]["guidance"] is None
    assert keyed.client.get(f"/v1/jobs/{job_id}/manifest", headers=keyed.b).status_code == 404


def test_replay_makes_the_same_job_with_its_inputs_copied(keyed: Keyed) -> None:
    image = base64.b64encode(image_bytes((32, 32))).decode()
    job_id = keyed.succeeded({"kind": "variation", "n": 2, "seed": 41, "image": image})
    key = input_key(job_id, "image.png")
    response = keyed.client.post(f"/v1/jobs/{job_id}/replay", headers=keyed.a)
    assert response.status_code == 202, response.text
    replay = response.json()
    assert replay["id"] != job_id and replay["replay_of"] == job_id
    assert (replay["kind"], replay["seed"], replay["n"], replay["status"]) == (
        "variation", 41, 2, "queued",
    )  # fmt: skip
    # What the original ran with is asked for explicitly: no family default can shift.
    assert (replay["size"], replay["sampler"], replay["steps"]) == (
        "64x64", "ddim", {"prior": 3, "decoder": 4, "upsampler": 2},
    )  # fmt: skip
    assert (replay["prior_guidance"], replay["decoder_guidance"]) == (4.0, 5.0)
    assert replay["reproducible"] is None  # not known until it ran
    with keyed.sessions() as session:
        row = session.get_one(Job, replay["id"])
    assert row.input_image_key is not None and row.input_image_key != key
    assert row.input_image_key.startswith(f"jobs/{row.id}/inputs/")
    assert keyed.storage.get_bytes(row.input_image_key) == keyed.storage.get_bytes(key)
    assert keyed.queue.sent[-1] == (row.id, "prior", 0)


def test_replay_says_whether_it_reproduced_once_it_ran(keyed: Keyed) -> None:
    job_id = keyed.succeeded({"prompt": "a red circle", "n": 2})
    same = keyed.client.post(f"/v1/jobs/{job_id}/replay", headers=keyed.a).json()
    other = keyed.client.post(f"/v1/jobs/{job_id}/replay", headers=keyed.a).json()
    with keyed.sessions.begin() as session:
        session.get_one(Job, same["id"]).stage_runs = all_runs(worker_id="w2")
        session.get_one(Job, other["id"]).stage_runs = all_runs(dtype="float16")
    same = keyed.client.get(f"/v1/jobs/{same['id']}", headers=keyed.a).json()
    other = keyed.client.get(f"/v1/jobs/{other['id']}", headers=keyed.a).json()
    assert (same["reproducible"], same["reproducible_reason"]) == (True, None)
    assert other["reproducible"] is False and "dtype 'float16'" in other["reproducible_reason"]


def test_replay_of_a_batch_without_batch_invariance_says_so_at_once(keyed: Keyed) -> None:
    unstable = all_runs(device="cuda", batch_jobs=4, batch_invariant=False)
    job_id = keyed.succeeded({"prompt": "a red circle"}, stage_runs=unstable)
    replay = keyed.client.post(f"/v1/jobs/{job_id}/replay", headers=keyed.a).json()
    assert replay["reproducible"] is False
    assert "batch of 4 jobs without batch-invariant mode" in replay["reproducible_reason"]


def test_replay_refuses_an_unfinished_job_and_other_keys_jobs(keyed: Keyed) -> None:
    created = keyed.client.post("/v1/jobs", json={"prompt": "a cat"}, headers=keyed.a).json()
    refused = keyed.client.post(f"/v1/jobs/{created['id']}/replay", headers=keyed.a)
    assert refused.status_code == 409 and refused.json()["error"]["param"] == "job_id"
    job_id = keyed.succeeded({"prompt": "a red circle"})
    assert keyed.client.post(f"/v1/jobs/{job_id}/replay", headers=keyed.b).status_code == 404


def test_replay_counts_against_the_keys_quota(keyed: Keyed) -> None:
    created = keyed.client.post("/v1/jobs", json={"prompt": "a dog"}, headers=keyed.b)
    assert created.status_code == 202
    job_id = created.json()["id"]
    with keyed.sessions.begin() as session:
        job = session.get_one(Job, job_id)
        job.status, job.params_used, job.stage_runs = "succeeded", USED, all_runs()
    first = keyed.client.post(f"/v1/jobs/{job_id}/replay", headers=keyed.b)
    assert first.status_code == 202, first.text
    second = keyed.client.post(f"/v1/jobs/{job_id}/replay", headers=keyed.b)
    assert second.status_code == 429 and second.json()["error"]["code"] == "quota_exceeded"
