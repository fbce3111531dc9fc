"""HTTP submit -> worker renders -> job succeeds -> PNG served -> rows right, in both modes."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.integration

SIZE = 64


@pytest.fixture(params=["distributed", "embedded"])
def stack(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{request.param}_stack")


def _submit_json(stack: Any, **fields: Any) -> dict[str, Any]:
    body = {"size": f"{SIZE}x{SIZE}", "steps": {"prior": 2, "decoder": 2, "upsampler": 2}, **fields}
    response = stack.client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert job["status"] == "queued" and job["images"] == []
    return job


def test_generate_variation_edit(stack: Any, e2e: Any) -> None:
    job = _submit_json(stack, kind="generate", prompt="a red circle", n=2, seed=11)
    done = e2e.wait_job(stack.client, job["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == 1.0 and done["error"] is None
    generated = e2e.fetch_pngs(stack.client, done)
    assert [im.size for im in generated] == [(SIZE, SIZE)] * 2
    e2e.check_succeeded_rows(stack, job["id"], n=2)

    # A variation of the first image, sent as a multipart upload.
    response = stack.client.post(
        "/v1/jobs",
        data={"kind": "variation", "n": "1", "size": f"{SIZE}x{SIZE}", "seed": "12",
              "steps_prior": "2", "steps_decoder": "2", "steps_upsampler": "2"},
        files={"image": ("in.png", e2e.png(generated[0]), "image/png")},
    )  # fmt: skip
    assert response.status_code == 202, response.text
    variation = e2e.wait_job(stack.client, response.json()["id"])
    assert variation["status"] == "succeeded", variation
    assert [im.size for im in e2e.fetch_pngs(stack.client, variation)] == [(SIZE, SIZE)]
    e2e.check_succeeded_rows(stack, variation["id"], n=1)

    # An edit of it inside a centre mask, sent as base64 JSON.
    source = generated[0].convert("RGB")
    mask = e2e.centre_mask(SIZE)
    image_b64, mask_b64 = (base64.b64encode(e2e.png(im)).decode() for im in (source, mask))
    edit = _submit_json(
        stack, kind="edit", prompt="a blue square", n=1, seed=13, image=image_b64, mask=mask_b64
    )
    edited = e2e.wait_job(stack.client, edit["id"])
    assert edited["status"] == "succeeded", edited
    [result] = e2e.fetch_pngs(stack.client, edited)
    e2e.check_succeeded_rows(stack, edit["id"], n=1)
    # Outside the mask an edit returns exactly the given pixels.
    keep = np.asarray(mask)[..., 3] == 255
    assert np.array_equal(np.asarray(result.convert("RGB"))[keep], np.asarray(source)[keep])


def test_same_seed_same_image(stack: Any, e2e: Any) -> None:
    """One request's images do not depend on what else the worker ran before it."""
    first, second = (
        _submit_json(stack, kind="generate", prompt="a green star", n=1, seed=99) for _ in range(2)
    )
    images = [
        e2e.fetch_pngs(stack.client, e2e.wait_job(stack.client, j["id"]))[0]
        for j in (first, second)
    ]
    assert np.array_equal(np.asarray(images[0]), np.asarray(images[1]))
