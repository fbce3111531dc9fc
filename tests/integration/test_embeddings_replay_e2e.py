"""Issue 15 end to end in both modes (PostgreSQL, Redis and a real worker; `unclip up`): the
manifest and a byte-identical replay, a variation by embedding_id, mixes, GET /v1/embeddings."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from shared.db import api_keys as key_store

pytestmark = pytest.mark.integration

STEPS = {"prior": 2, "decoder": 2, "upsampler": 2}
BASE = {"size": "64x64", "steps": STEPS}


def _run(stack: Any, e2e: Any, **body: Any) -> dict[str, Any]:
    response = stack.client.post("/v1/jobs", json={**BASE, **body})
    assert response.status_code == 202, response.text
    done: dict[str, Any] = e2e.wait_job(stack.client, response.json()["id"])
    assert done["status"] == "succeeded", done
    return done


def _png_bytes(stack: Any, job: dict[str, Any]) -> list[bytes]:
    return [stack.client.get(f"/v1/jobs/{job['id']}/images/{i['index']}").content
            for i in job["images"]]  # fmt: skip


@pytest.fixture(scope="module", params=["distributed", "embedded"])
def stack(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_stack")


@pytest.fixture(scope="module")
def generated(stack: Any, e2e: Any) -> dict[str, Any]:
    return _run(stack, e2e, kind="generate", prompt="a red circle", n=2, seed=21)


def test_replay_gives_the_originals_png_bytes(
    stack: Any, e2e: Any, generated: dict[str, Any]
) -> None:
    manifest = stack.client.get(f"/v1/jobs/{generated['id']}/manifest").json()
    assert list(manifest["stages"]) == ["prior", "decoder", "upsampler"]
    assert [im["embedding_id"] for im in manifest["images"]] == [
        im["embedding_id"] for im in generated["images"]
    ]
    decoder = manifest["images"][1]["stages"]["decoder"]
    # The stack runs the default full-speed mode (UNCLIP_REPRODUCIBLE unset): a lone job
    # still replays to its bytes, but its rows are not batch-invariant.
    assert decoder["device"] == "cpu" and decoder["batch_invariant"] is False
    assert manifest["stages"]["decoder"]["reproducible"] is False
    assert decoder["family"]["weights"] and decoder["steps"] == 2

    response = stack.client.post(f"/v1/jobs/{generated['id']}/replay")
    assert response.status_code == 202, response.text
    replay = e2e.wait_job(stack.client, response.json()["id"])
    assert replay["status"] == "succeeded", replay
    assert replay["replay_of"] == generated["id"] and replay["seed"] == 21
    assert _png_bytes(stack, replay) == _png_bytes(stack, generated)
    assert (replay["reproducible"], replay["reproducible_reason"]) == (True, None)
    # The replay's images have embeddings of their own.
    assert {im["embedding_id"] for im in replay["images"]}.isdisjoint(
        {im["embedding_id"] for im in generated["images"]}
    )


def test_variation_by_embedding_id_and_two_prompt_mix_succeed(
    stack: Any, e2e: Any, generated: dict[str, Any]
) -> None:
    source = generated["images"][0]["embedding_id"]
    variation = _run(stack, e2e, kind="variation", embedding_id=source, n=1, seed=3)
    assert variation["input_embedding_id"] == source
    assert len(e2e.fetch_pngs(stack.client, variation)) == 1
    [out] = variation["images"]
    # The variation's prior output is the given embedding itself.
    given = stack.client.get(f"/v1/embeddings/{source}").json()["embedding"]
    assert stack.client.get(f"/v1/embeddings/{out['embedding_id']}").json()["embedding"] == given

    mix = _run(stack, e2e, kind="mix", n=1, seed=4, mix=[
        {"prompt": "a red circle", "weight": 1}, {"prompt": "a blue square", "weight": 2},
    ])  # fmt: skip
    assert [entry["source"] for entry in mix["mix"]] == ["prompt", "prompt"]
    assert len(e2e.fetch_pngs(stack.client, mix)) == 1
    with_embedding = _run(stack, e2e, kind="mix", n=1, seed=5, mix=[
        {"prompt": "a green star", "weight": 1}, {"embedding_id": source, "weight": 1},
    ])  # fmt: skip
    assert with_embedding["mix"][1]["embedding_id"] == source


def test_embedding_json_and_npy_agree_and_another_key_gets_404(
    stack: Any, generated: dict[str, Any]
) -> None:
    embedding_id = generated["images"][1]["embedding_id"]
    as_json = stack.client.get(f"/v1/embeddings/{embedding_id}")
    assert as_json.status_code == 200, as_json.text
    vector = np.asarray(as_json.json()["embedding"], dtype=np.float32)
    as_npy = stack.client.get(f"/v1/embeddings/{embedding_id}", params={"format": "npy"})
    assert np.array_equal(np.load(io.BytesIO(as_npy.content)), vector)
    assert vector.shape == (as_json.json()["dim"],)
    secret = stack.settings.api_key_secret.get_secret_value()
    with stack.sessions.begin() as session:
        other = key_store.create_key(session=session, server_secret=secret, name="other").secret
    auth = {"Authorization": f"Bearer {other}"}
    assert stack.client.get(f"/v1/embeddings/{embedding_id}", headers=auth).status_code == 404
    assert stack.client.get(f"/v1/jobs/{generated['id']}/manifest", headers=auth).status_code == 404
    body = {**BASE, "kind": "variation", "embedding_id": embedding_id}
    refused = stack.client.post("/v1/jobs", json=body, headers=auth)
    assert refused.status_code == 404 and refused.json()["error"]["param"] == "embedding_id"
