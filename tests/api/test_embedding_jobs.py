"""POST /v1/jobs with embedding_id and mix, embedding ids on images, GET /v1/embeddings/{id}."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import save
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from shared.db import api_keys as key_store
from shared.db.embeddings import record_embeddings
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import Job, JobImage
from shared.embedding_payload import read_row
from shared.settings import Settings
from shared.storage.local import LocalStorage
from tests.api.conftest import RecordingQueue, image_bytes
from tests.api.keys_support import KEY_SECRET, keyed_settings

DIM = 8


@dataclass
class Keyed:
    client: TestClient
    settings: Settings
    storage: LocalStorage
    sessions: sessionmaker[Session]
    queue: RecordingQueue
    a: dict[str, str]  # Authorization headers of key a and key b
    b: dict[str, str]

    def submit(self, body: dict[str, Any], auth: dict[str, str] | None = None) -> Any:
        return self.client.post("/v1/jobs", json=body, headers=auth or self.a)

    def finished_prior(self, auth: dict[str, str], n: int = 2) -> tuple[str, list[str], Any]:
        """A job of that key whose prior stored (n, D) embeddings with ids; (job, ids, array)."""
        created = self.submit({"prompt": "a red circle", "n": n}, auth)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        vectors = np.random.default_rng(0).standard_normal((n, DIM)).astype(np.float32)
        key = f"jobs/{job_id}/attempt-1/prior/image_embeddings.safetensors"
        self.storage.put_bytes(key, save({"x": vectors}), "application/x-safetensors")
        with self.sessions.begin() as session:
            job = session.get_one(Job, job_id)
            job.prior_output_key = key
            rows = record_embeddings(session, job, storage_key=key, dim=DIM,
                                     variation_input=False)  # fmt: skip
            ids = [row.id for row in rows]
        return job_id, ids, vectors


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[Keyed]:
    settings = keyed_settings(tmp_path / "var", require_api_keys=True)
    storage = LocalStorage(settings.data_dir / "storage")
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    with sessions.begin() as session:
        secrets = [
            key_store.create_key(session=session, server_secret=KEY_SECRET, name=name).secret
            for name in ("a", "b")
        ]
    queue = RecordingQueue()
    with TestClient(create_app(settings, storage=storage, queue=queue)) as client:
        a, b = ({"Authorization": f"Bearer {s}"} for s in secrets)
        yield Keyed(client, settings, storage, sessions, queue, a, b)
    engine.dispose()


def _error(response: Any, status: int, param: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    return str(error["message"])


def test_variation_by_embedding_id_copies_the_vector_into_the_new_job(keyed: Keyed) -> None:
    _, ids, vectors = keyed.finished_prior(keyed.a)
    response = keyed.submit({"kind": "variation", "embedding_id": ids[1], "n": 1})
    assert response.status_code == 202, response.text
    public = response.json()
    assert public["kind"] == "variation" and public["input_embedding_id"] == ids[1]
    with keyed.sessions() as session:
        job = session.get_one(Job, public["id"])
    assert job.input_image_key is None and job.input_embedding_key is not None
    assert job.input_embedding_key.startswith(f"jobs/{job.id}/inputs/")
    copied = read_row(keyed.storage.get_bytes(job.input_embedding_key), 0)
    assert np.array_equal(copied, vectors[1])
    assert keyed.queue.sent[-1][0] == job.id


def test_multipart_variation_takes_an_embedding_id(keyed: Keyed) -> None:
    _, ids, _ = keyed.finished_prior(keyed.a)
    response = keyed.client.post(
        "/v1/jobs",
        files={"kind": (None, "variation"), "embedding_id": (None, ids[0])},
        headers=keyed.a,
    )
    assert response.status_code == 202, response.text
    assert response.json()["input_embedding_id"] == ids[0]


def test_another_keys_or_unknown_embedding_is_404_naming_the_field(keyed: Keyed) -> None:
    _, ids, _ = keyed.finished_prior(keyed.a)
    message = _error(keyed.submit({"kind": "variation", "embedding_id": ids[0]}, keyed.b), 404,
                     "embedding_id")  # fmt: skip
    assert ids[0] in message
    _error(keyed.submit({"kind": "variation", "embedding_id": "emb_nope"}), 404, "embedding_id")
    mix = {"kind": "mix", "mix": [{"prompt": "a star", "weight": 1},
                                  {"embedding_id": ids[0], "weight": 1}]}  # fmt: skip
    _error(keyed.submit(mix, keyed.b), 404, "mix.1.embedding_id")
    with keyed.sessions() as session:  # nothing was created for the refused requests
        assert session.query(Job).count() == 1


def test_embedding_fields_are_refused_where_they_do_not_belong(keyed: Keyed) -> None:
    _, ids, _ = keyed.finished_prior(keyed.a)
    png = base64.b64encode(image_bytes((32, 32))).decode()
    both = {"kind": "variation", "embedding_id": ids[0], "image": png}
    assert "not both" in _error(keyed.submit(both), 400, "image")
    _error(keyed.submit({"prompt": "x", "embedding_id": ids[0]}), 400, "embedding_id")
    _error(keyed.submit({"prompt": "x", "mix": [{"prompt": "a", "weight": 1}] * 2}), 400, "mix")
    assert "2 to 4" in _error(keyed.submit({"kind": "mix"}), 400, "mix")


def test_two_prompt_mix_is_stored_with_its_prompts_and_weights(keyed: Keyed) -> None:
    body = {"kind": "mix", "n": 2, "mix": [{"prompt": "a red circle", "weight": 1},
                                           {"prompt": "a blue square", "weight": 3}]}  # fmt: skip
    response = keyed.submit(body)
    assert response.status_code == 202, response.text
    public = response.json()
    assert public["prompt"] == "a red circle | a blue square"
    assert public["mix"] == [
        {"source": "prompt", "weight": 1.0, "prompt": "a red circle", "embedding_id": None},
        {"source": "prompt", "weight": 3.0, "prompt": "a blue square", "embedding_id": None},
    ]
    with keyed.sessions() as session:
        assert session.get_one(Job, public["id"]).mix == [
            {"weight": 1.0, "prompt": "a red circle"}, {"weight": 3.0, "prompt": "a blue square"},
        ]  # fmt: skip


def test_mix_with_an_image_and_an_embedding_stores_both_for_the_job(keyed: Keyed) -> None:
    _, ids, vectors = keyed.finished_prior(keyed.a)
    png = base64.b64encode(image_bytes((32, 32))).decode()
    body = {"kind": "mix", "mix": [{"image": png, "weight": 2}, {"embedding_id": ids[0],
                                                                 "weight": 1}]}  # fmt: skip
    response = keyed.submit(body)
    assert response.status_code == 202, response.text
    assert [e["source"] for e in response.json()["mix"]] == ["image", "embedding"]
    with keyed.sessions() as session:
        job = session.get_one(Job, response.json()["id"])
    assert job.mix is not None and job.prompt == ""
    image_entry, embedding_entry = job.mix
    assert keyed.storage.get_bytes(image_entry["image_key"]).startswith(b"\x89PNG")
    copied = read_row(keyed.storage.get_bytes(embedding_entry["embedding_key"]), 0)
    assert np.array_equal(copied, vectors[0]) and embedding_entry["embedding_id"] == ids[0]


BAD_IMAGE = base64.b64encode(b"not an image").decode()


@pytest.mark.parametrize(
    ("mix", "status", "param", "words"),
    [
        ([{"prompt": "a", "weight": 1}], 400, "mix", "2 to 4"),
        ([{"prompt": "a", "weight": 1}] * 5, 400, "mix", "2 to 4"),
        ([{"prompt": "a", "weight": 0}, {"prompt": "b", "weight": 1}], 400, "mix.0.weight", "> 0"),
        ([{"prompt": "a", "weight": -2}, {"prompt": "b", "weight": 1}], 400, "mix.0.weight", "> 0"),
        ([{"prompt": "a", "image": "AAAA", "weight": 1}, {"prompt": "b", "weight": 1}], 400,
         "mix.0", "exactly one"),
        ([{"weight": 1}, {"prompt": "b", "weight": 1}], 400, "mix.0", "exactly one"),
        ([{"prompt": "a", "weight": 1}, {"image": BAD_IMAGE, "weight": 1}], 400, "mix.1.image",
         "PNG"),
        ([{"prompt": "a", "weight": 1}, {"prompt": "   ", "weight": 1}], 400, "mix.1.prompt",
         "blank"),
    ],
)  # fmt: skip
def test_bad_mix_entries_are_refused_naming_the_entry(
    keyed: Keyed, mix: list[dict[str, Any]], status: int, param: str, words: str
) -> None:
    message = _error(keyed.submit({"kind": "mix", "mix": mix}), status, param)
    assert words in message


def test_job_images_carry_their_embedding_ids(keyed: Keyed) -> None:
    job_id, ids, _ = keyed.finished_prior(keyed.a)
    with keyed.sessions.begin() as session:
        session.execute(update(Job).where(Job.id == job_id).values(status="succeeded"))
        for index in range(2):
            session.add(JobImage(job_id=job_id, index=index, attempt=3, width=64, height=64,
                                 storage_key=f"jobs/{job_id}/attempt-3/images/{index}.png",
                                 published=True))  # fmt: skip
    public = keyed.client.get(f"/v1/jobs/{job_id}", headers=keyed.a).json()
    assert [image["embedding_id"] for image in public["images"]] == ids


def test_get_embedding_json_and_npy_agree_and_other_keys_get_404(keyed: Keyed) -> None:
    _, ids, vectors = keyed.finished_prior(keyed.a)
    as_json = keyed.client.get(f"/v1/embeddings/{ids[1]}", headers=keyed.a)
    assert as_json.status_code == 200, as_json.text
    as_npy = keyed.client.get(f"/v1/embeddings/{ids[1]}?format=npy", headers=keyed.a)
    assert as_npy.headers["content-type"] == "application/x-npy"
    array = np.load(io.BytesIO(as_npy.content))
    assert np.array_equal(array, np.asarray(as_json.json()["embedding"], dtype=np.float32))
    assert np.array_equal(array, vectors[1])
    assert keyed.client.get(f"/v1/embeddings/{ids[1]}", headers=keyed.b).status_code == 404
