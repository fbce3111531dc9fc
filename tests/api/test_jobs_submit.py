"""POST /v1/jobs: accepted jobs are stored then enqueued; every bad input gets its 4xx, unsent."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from shared.db.engine import make_engine
from shared.db.models import Job
from shared.db.states import Stage
from shared.settings import Settings
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue, image_bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _job_count(settings: Settings) -> int:
    engine = make_engine(settings)
    with engine.connect() as connection:
        count = connection.execute(select(func.count()).select_from(Job)).scalar_one()
    engine.dispose()
    return int(count)


def test_generate_json_is_stored_then_enqueued(
    client: TestClient, queue: RecordingQueue, api_settings: Settings
) -> None:
    response = client.post("/v1/jobs", json={"prompt": "a red circle", "n": 2, "seed": 5})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["kind"] == "generate"
    assert body["n"] == 2 and body["seed"] == 5 and body["images"] == []
    # What the client left out stays null; the worker fills it from the family's defaults.
    assert body["size"] is None and body["sampler"] is None and body["params_used"] is None
    assert body["steps"] == {"prior": None, "decoder": None, "upsampler": None}
    # No size: the served family's largest native size (models/shapes: 64 -> 256 cascade).
    assert body["native_size"] == "256x256" and body["resized"] is False
    assert response.headers["location"] == f"/v1/jobs/{body['id']}"
    assert queue.sent == [(body["id"], Stage.prior, 0)]
    assert _job_count(api_settings) == 1


def test_seed_is_random_when_absent_and_stored(client: TestClient) -> None:
    seeds = {client.post("/v1/jobs", json={"prompt": "x"}).json()["seed"] for _ in range(3)}
    assert len(seeds) > 1
    assert all(0 <= s < 2**32 for s in seeds)


def test_variation_multipart_stores_the_image(
    client: TestClient, queue: RecordingQueue, storage: LocalStorage, api_settings: Settings
) -> None:
    data = image_bytes((48, 48), fmt="JPEG")
    response = client.post(
        "/v1/jobs",
        data={"kind": "variation", "n": "3", "size": "64x64", "steps_decoder": "7"},
        files={"image": ("photo.png", data, "image/png")},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["n"] == 3 and body["steps"]["decoder"] == 7 and body["prompt"] == ""
    engine = make_engine(api_settings)
    with engine.connect() as connection:
        key = connection.execute(select(Job.input_image_key)).scalar_one()
    engine.dispose()
    # Stored re-encoded as PNG (no metadata or trailing bytes), with the pixels sent.
    assert key == f"jobs/{body['id']}/inputs/image.png"
    with Image.open(io.BytesIO(storage.get_bytes(key))) as stored:
        assert stored.format == "PNG"
        assert stored.tobytes() == Image.open(io.BytesIO(data)).convert("RGB").tobytes()
    assert len(queue.sent) == 1


def test_edit_json_with_mask(client: TestClient, queue: RecordingQueue) -> None:
    payload = {
        "kind": "edit",
        "prompt": "a blue square",
        "image": _b64(image_bytes((32, 32))),
        "mask": _b64(image_bytes((32, 32), mode="RGBA")),
        "steps": {"prior": 3, "upsampler": 2},
        "prior_guidance": 2.5,
    }
    response = client.post("/v1/jobs", json=payload)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["steps"] == {"prior": 3, "decoder": None, "upsampler": 2}
    assert body["prior_guidance"] == 2.5 and body["decoder_guidance"] is None
    assert len(queue.sent) == 1


def test_edit_without_mask_needs_alpha(client: TestClient, queue: RecordingQueue) -> None:
    ok = client.post(
        "/v1/jobs",
        json={"kind": "edit", "prompt": "p", "image": _b64(image_bytes(mode="RGBA"))},
    )
    assert ok.status_code == 202, ok.text
    bad = client.post(
        "/v1/jobs", json={"kind": "edit", "prompt": "p", "image": _b64(image_bytes(mode="RGB"))}
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "image"
    assert "alpha" in bad.json()["error"]["message"]
    assert len(queue.sent) == 1


def _svg() -> bytes:
    return b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="GIF")
    return buffer.getvalue()


BAD_JSON: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("empty prompt", {"prompt": ""}, 400, "prompt", "1 to 1000"),
    ("blank prompt", {"prompt": "   "}, 400, "prompt", "empty"),
    ("missing prompt", {"kind": "generate"}, 400, "prompt", "empty"),
    ("long prompt", {"prompt": "x" * 1001}, 400, "prompt", "1001 characters"),
    ("n zero", {"prompt": "p", "n": 0}, 400, "n", "1 to 10"),
    ("n eleven", {"prompt": "p", "n": 11}, 400, "n", "n=11"),
    ("n text", {"prompt": "p", "n": "many"}, 400, "n", "'many'"),
    ("size", {"prompt": "p", "size": "300x300"}, 400, "size", "'300x300'"),
    ("kind", {"prompt": "p", "kind": "inpaint"}, 400, "kind", "'inpaint'"),
    ("sampler", {"prompt": "p", "sampler": "euler"}, 400, "sampler", "dpmpp_2m"),
    ("steps", {"prompt": "p", "steps": {"decoder": 0}}, 400, "steps.decoder", "1 to 250"),
    ("steps big", {"prompt": "p", "steps": {"prior": 101}}, 400, "steps.prior", "101"),
    ("guidance", {"prompt": "p", "prior_guidance": 21}, 400, "prior_guidance", "0.0 to 20.0"),
    ("seed", {"prompt": "p", "seed": -1}, 400, "seed", "4294967295"),
    ("unknown field", {"promt": "p"}, 400, "promt", "allowed fields"),
    ("generate image", {"prompt": "p", "image": "aGk="}, 400, "image", "variation"),
    ("variation no image", {"kind": "variation"}, 400, "image", "needs an image"),
    ("bad base64", {"kind": "variation", "image": "***"}, 400, "image", "base64"),
]


@pytest.mark.parametrize(
    ("payload", "status", "param", "says"),
    [case[1:] for case in BAD_JSON],
    ids=[case[0] for case in BAD_JSON],
)
def test_bad_json_input_is_refused_and_not_enqueued(
    client: TestClient,
    queue: RecordingQueue,
    api_settings: Settings,
    payload: dict[str, Any],
    status: int,
    param: str,
    says: str,
) -> None:
    response = client.post("/v1/jobs", json=payload)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert says in error["message"]
    assert error["type"] == "invalid_request_error"
    assert queue.sent == [] and _job_count(api_settings) == 0


def _variation(client: TestClient, data: bytes, **extra: Any) -> Any:
    return client.post(
        "/v1/jobs",
        data={"kind": "variation", **extra},
        files={"image": ("image.png", data, "image/png")},
    )


@pytest.mark.parametrize(
    ("data", "status", "says"),
    [
        (b"not an image at all", 400, "PNG, JPEG, WEBP"),
        (_svg(), 400, "whatever its name"),
        (_gif(), 400, "PNG, JPEG, WEBP"),
        (image_bytes((40, 20)), 400, "40x20"),
        (image_bytes((32, 32))[:60], 400, "cannot be decoded"),
    ],
    ids=["text", "svg-named-png", "gif-named-png", "not-square", "truncated"],
)
def test_bad_upload_is_refused(
    client: TestClient, queue: RecordingQueue, data: bytes, status: int, says: str
) -> None:
    response = _variation(client, data)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == "image"
    assert says in response.json()["error"]["message"]
    assert queue.sent == []


def test_oversized_upload_is_413(client: TestClient, queue: RecordingQueue) -> None:
    limit = 4 * 1024 * 1024
    big = image_bytes((16, 16)) + b"\0" * limit
    response = _variation(client, big)
    assert response.status_code == 413
    assert str(limit) in response.json()["error"]["message"]
    assert queue.sent == []


def test_body_over_the_cap_is_refused_before_reading(
    client: TestClient, queue: RecordingQueue
) -> None:
    response = client.post(
        "/v1/jobs",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": str(10**9)},
    )
    assert response.status_code == 413 and response.json()["error"]["param"] == "body"
    assert queue.sent == []


def test_too_many_pixels_is_413(client: TestClient, queue: RecordingQueue) -> None:
    # 2100x2100 is over the 2048*2048 pixel limit yet compresses to a few KiB.
    response = _variation(client, image_bytes((2100, 2100), mode="L"))
    assert response.status_code == 413, response.text
    assert "4194304" in response.json()["error"]["message"]
    assert queue.sent == []


def test_decompression_bomb_warning_is_an_error(client: TestClient, queue: RecordingQueue) -> None:
    pixels = Image.MAX_IMAGE_PIXELS or 89_478_485
    side = int((pixels * 1.2) ** 0.5)  # between 1x and 2x: Pillow would only warn
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")
    response = _variation(client, buffer.getvalue())
    assert response.status_code == 413, response.text
    assert queue.sent == []


def test_mask_of_another_size_is_400(client: TestClient, queue: RecordingQueue) -> None:
    response = client.post(
        "/v1/jobs",
        data={"kind": "edit", "prompt": "p"},
        files={
            "image": ("image.png", image_bytes((32, 32)), "image/png"),
            "mask": ("mask.png", image_bytes((16, 16), mode="RGBA"), "image/png"),
        },
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "mask" and "16x16" in error["message"]
    assert "32x32" in error["message"]
    assert queue.sent == []


def test_unsupported_content_type_is_415(client: TestClient, queue: RecordingQueue) -> None:
    response = client.post("/v1/jobs", content=b"prompt=x", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["error"]["message"]
    assert queue.sent == []


def test_malformed_json_is_400(client: TestClient, queue: RecordingQueue) -> None:
    response = client.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "body"
    response = client.post(
        "/v1/jobs",
        content=json.dumps([1, 2]).encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400 and "list" in response.json()["error"]["message"]
    assert queue.sent == []


def test_broker_down_is_503_and_the_job_says_why(client: TestClient, queue: RecordingQueue) -> None:
    queue.down = True
    response = client.post("/v1/jobs", json={"prompt": "a red circle"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "queue_unavailable"
    listed = client.get("/v1/jobs").json()["data"]
    assert len(listed) == 1
    assert listed[0]["status"] == "failed"
    assert listed[0]["status_reason"] == "queue_unavailable"
    assert listed[0]["error"]["code"] == "queue_unavailable"


def test_idempotency_key_returns_the_same_job(client: TestClient, queue: RecordingQueue) -> None:
    headers = {"Idempotency-Key": "abc-123"}
    first = client.post("/v1/jobs", json={"prompt": "p"}, headers=headers)
    second = client.post("/v1/jobs", json={"prompt": "p"}, headers=headers)
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert len(queue.sent) == 1
