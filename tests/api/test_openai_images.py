"""/v1/images/* and /v1/models on OpenAI's wire: one job per request, waited for, then answered.

A stand-in queue plays the worker: on enqueue it finishes the job the way a worker would
(published PNGs in storage, or a rejected / failed row), so the sync path can be seen whole.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, update

from api.app import create_app
from shared.db import migrate
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import Job, JobImage
from shared.db.states import Stage
from shared.moderation.gate import lexical_checker_for
from shared.moderation.verdict import Decision
from shared.settings import Settings
from shared.storage.local import LocalStorage

from .conftest import image_bytes

BASE = "http://images.test"
SIDE = 64
THREAD_POOL_SIZE = 40  # anyio's default limit, which run_in_threadpool and sync routes share
# Prompts the default policy's lexical terms refuse (the first one it blocks is used).
BLOCK_CANDIDATES = ("a nude woman on a bed", "h1tler was right poster", "d\u0435capitated body")


def _png(colour: tuple[int, int, int], side: int = SIDE) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class WorkerQueue:
    """A StageQueue that, on enqueue, ends the job as `outcome` says (None: leaves it queued)."""

    settings: Settings
    storage: LocalStorage
    outcome: str | None = "succeeded"
    sent: list[tuple[str, Stage, int]] = field(default_factory=list)

    def enqueue(self, job_id: str, stage: Stage, attempt: int) -> str:
        self.sent.append((job_id, stage, attempt))
        if self.outcome is not None:
            self._finish(job_id)
        return f"{job_id}.{stage}.{attempt}"

    def check(self) -> None:
        return None

    def _finish(self, job_id: str) -> None:
        engine = make_engine(self.settings)
        with make_sessionmaker(engine).begin() as session:
            job = session.get_one(Job, job_id)
            values: dict[str, Any] = {"status": self.outcome}
            if self.outcome == "succeeded":
                values["progress"] = 1.0
                for index in range(job.n):
                    key = f"jobs/{job_id}/attempt-3/images/{index}.png"
                    self.storage.put_bytes(key, _png((40 * index, 100, 200)), "image/png")
                    session.add(
                        JobImage(job_id=job_id, index=index, attempt=3, storage_key=key,
                                 width=SIDE, height=SIDE, published=True)
                    )  # fmt: skip
            elif self.outcome == "rejected":
                values["status_reason"] = "sexual"
            elif self.outcome == "failed":
                values.update(error_code="out_of_memory", error_message="CUDA out of memory")
            session.execute(update(Job).where(Job.id == job_id).values(**values))
        engine.dispose()


@dataclass
class Api:
    client: TestClient
    queue: WorkerQueue
    settings: Settings
    storage: LocalStorage

    def jobs(self) -> list[Job]:
        engine = make_engine(self.settings)
        with make_sessionmaker(engine)() as session:
            rows = list(session.scalars(select(Job).order_by(Job.created_at)))
        engine.dispose()
        return rows


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    clients: list[TestClient] = []

    def _make(**overrides: Any) -> Api:
        settings = Settings(data_dir=tmp_path / f"var{len(clients)}", public_base_url=BASE,
                            url_signing_secret="s" * 32, **overrides)  # fmt: skip
        migrate.upgrade(settings)
        storage = LocalStorage(settings.data_dir / "storage")
        queue = WorkerQueue(settings, storage)
        client = TestClient(create_app(settings, storage=storage, queue=queue))
        client.__enter__()
        clients.append(client)
        return Api(client, queue, settings, storage)

    yield _make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()


def _fetch(api: Api, url: str) -> bytes:
    assert url.startswith(f"{BASE}/v1/jobs/")
    response = api.client.get(url.removeprefix(BASE))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return response.content


def test_generate_answers_signed_urls_of_the_jobs_images(api: Api) -> None:
    response = api.client.post("/v1/images/generations", json={"prompt": "a red circle", "n": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    [job] = api.jobs()
    assert set(body) == {"created", "data"} and body["created"] == int(job.created_at.timestamp())
    assert (job.kind, job.prompt, job.n) == ("generate", "a red circle", 2)
    assert response.headers["x-unclip-job-id"] == job.id
    assert [set(item) for item in body["data"]] == [{"url"}, {"url"}]
    for index, item in enumerate(body["data"]):
        assert item["url"].startswith(f"{BASE}/v1/jobs/{job.id}/images/{index}?expires=")
        assert "&signature=" in item["url"]
        assert _fetch(api, item["url"]) == _png((40 * index, 100, 200))
    assert api.queue.sent == [(job.id, Stage.prior, 0)]


def test_b64_json_carries_the_png_bytes(api: Api) -> None:
    response = api.client.post(
        "/v1/images/generations",
        json={"prompt": "a blue square", "response_format": "b64_json", "model": "dall-e-2"},
    )
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert set(item) == {"b64_json"}
    png = base64.b64decode(item["b64_json"])
    assert png == _png((0, 100, 200))
    assert Image.open(io.BytesIO(png)).size == (SIDE, SIDE)


def test_model_names_the_served_family_or_is_refused(api: Api) -> None:
    listed = api.client.get("/v1/models")
    assert listed.status_code == 200
    ids = [model["id"] for model in listed.json()["data"]]
    assert listed.json()["object"] == "list" and "dall-e-2" in ids and len(ids) == 2
    family = next(i for i in ids if i != "dall-e-2")
    for model in listed.json()["data"]:
        assert set(model) == {"id", "object", "created", "owned_by"}
        assert model["object"] == "model" and isinstance(model["created"], int)
    ok = api.client.post("/v1/images/generations", json={"prompt": "x", "model": family})
    assert ok.status_code == 200, ok.text
    assert api.client.get(f"/v1/models/{family}").json()["id"] == family

    refused = api.client.post("/v1/images/generations", json={"prompt": "x", "model": "dall-e-3"})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "model" and "'dall-e-3'" in error["message"]
    assert family in error["message"] and "dall-e-2" in error["message"]
    missing = api.client.get("/v1/models/dall-e-3")
    assert missing.status_code == 404 and family in missing.json()["error"]["message"]
    assert len(api.jobs()) == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "n": 11}, "n"),
        ({"prompt": "x", "size": "100x100"}, "size"),
        ({"prompt": "x", "response_format": "png"}, "response_format"),
        ({"prompt": "x", "style": "vivid"}, "style"),
        ({"n": 1}, "prompt"),
        ({"prompt": "x" * 1001}, "prompt"),
    ],
)
def test_bad_generation_fields_are_400_naming_the_field(
    api: Api, body: dict[str, Any], param: str
) -> None:
    response = api.client.post("/v1/images/generations", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert api.jobs() == [] and api.queue.sent == []


def test_user_is_accepted(api: Api) -> None:
    response = api.client.post("/v1/images/generations", json={"prompt": "x", "user": "u-1"})
    assert response.status_code == 200, response.text


def test_a_greyscale_edit_needs_a_mask_and_every_refusal_is_400(api: Api) -> None:
    grey = image_bytes((64, 64), mode="L")
    alone = api.client.post(
        "/v1/images/edits", data={"prompt": "a hat"}, files={"image": ("in.png", grey, "image/png")}
    )
    assert alone.status_code == 400, alone.text
    assert alone.json()["error"]["param"] == "image" and "mask" in alone.json()["error"]["message"]
    small_mask = api.client.post(
        "/v1/images/edits", data={"prompt": "a hat"},
        files={"image": ("in.png", grey, "image/png"),
               "mask": ("m.png", image_bytes((32, 32), mode="RGBA"), "image/png")},
    )  # fmt: skip
    assert small_mask.status_code == 400 and small_mask.json()["error"]["param"] == "mask"
    gif = io.BytesIO()
    Image.new("RGB", (64, 64)).save(gif, format="GIF")
    not_png = api.client.post(
        "/v1/images/variations", files={"image": ("in.gif", gif.getvalue(), "image/gif")}
    )
    assert not_png.status_code == 400 and not_png.json()["error"]["code"] == "invalid_image_format"
    assert api.jobs() == []
    with_mask = api.client.post(
        "/v1/images/edits", data={"prompt": "a hat"},
        files={"image": ("in.png", grey, "image/png"),
               "mask": ("m.png", image_bytes((64, 64), mode="RGBA"), "image/png")},
    )  # fmt: skip
    assert with_mask.status_code == 200, with_mask.text


def test_edit_without_mask_uses_the_alpha_and_refuses_rgb(api: Api) -> None:
    rgb = api.client.post(
        "/v1/images/edits",
        data={"prompt": "a hat"},
        files={"image": ("in.png", image_bytes((64, 64), mode="RGB"), "image/png")},
    )
    assert rgb.status_code == 400
    assert rgb.json()["error"]["message"] == (
        "Invalid input image - format must be in ['RGBA', 'LA', 'L'], got RGB."
    )
    assert api.jobs() == []

    rgba = api.client.post(
        "/v1/images/edits",
        data={"prompt": "a hat", "n": "2", "response_format": "b64_json"},
        # A wrong part type: the bytes are sniffed, not the name or MIME type.
        files={"image": ("in.bin", image_bytes((64, 64), mode="RGBA"), "text/plain")},
    )
    assert rgba.status_code == 200, rgba.text
    assert len(rgba.json()["data"]) == 2
    [job] = api.jobs()
    assert (job.kind, job.prompt, job.n, job.mask_key) == ("edit", "a hat", 2, None)
    assert job.input_image_key is not None


def test_edit_with_mask_and_variation(api: Api) -> None:
    edit = api.client.post(
        "/v1/images/edits",
        data={"prompt": "a hat"},
        files={
            "image": ("in.png", image_bytes((64, 64), mode="RGB"), "image/png"),
            "mask": ("mask.png", image_bytes((64, 64), mode="RGBA"), "image/png"),
        },
    )
    assert edit.status_code == 200, edit.text
    variation = api.client.post(
        "/v1/images/variations",
        data={"n": "1", "size": "256x256"},
        files={"image": ("in.png", image_bytes((64, 64), mode="RGB"), "image/png")},
    )
    assert variation.status_code == 200, variation.text
    assert set(variation.json()["data"][0]) == {"url"}
    edit_job, variation_job = api.jobs()
    assert edit_job.kind == "edit" and edit_job.mask_key is not None
    assert (variation_job.kind, variation_job.size) == ("variation", "256x256")


def test_variation_refuses_a_non_square_image(api: Api) -> None:
    response = api.client.post(
        "/v1/images/variations",
        files={"image": ("in.png", image_bytes((64, 32)), "image/png")},
    )
    assert response.status_code == 400  # OpenAI's answer to bad input, so its clients agree
    assert response.json()["error"]["param"] == "image"
    assert api.jobs() == []


def test_prefer_respond_async_answers_202_with_the_job(api: Api) -> None:
    api.queue.outcome = None  # nobody renders: an async answer must not wait
    response = api.client.post(
        "/v1/images/generations",
        json={"prompt": "a red circle", "n": 3},
        headers={"Prefer": "respond-async, wait=5"},
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["object"] == "job" and job["status"] == "queued" and job["n"] == 3
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert api.client.get(response.headers["location"]).json()["id"] == job["id"]

    edit = api.client.post(
        "/v1/images/edits",
        data={"prompt": "a hat"},
        files={"image": ("in.png", image_bytes((64, 64), mode="RGBA"), "image/png")},
        headers={"Prefer": "respond-async"},
    )
    assert edit.status_code == 202 and edit.json()["kind"] == "edit"


def test_past_the_sync_timeout_504_names_the_job(make_api: Callable[..., Api]) -> None:
    api = make_api(sync_timeout_s=0.3)
    api.queue.outcome = None
    response = api.client.post("/v1/images/generations", json={"prompt": "a red circle"})
    assert response.status_code == 504, response.text
    [job] = api.jobs()
    error = response.json()["error"]
    assert error["code"] == "timeout" and error["type"] == "server_error"
    assert job.id in error["message"]
    assert response.headers["x-unclip-job-id"] == job.id
    assert response.headers["x-should-retry"] == "false"
    assert job.status == "queued"  # the job goes on


def test_a_sync_wait_ends_when_the_server_shuts_down(make_api: Callable[..., Api]) -> None:
    """SIGTERM does not hold the API for the sync timeout: the wait answers the same 504
    (the job goes on, x-should-retry: false) as soon as the server is told to stop."""
    from api.shutdown import register_stopping

    api = make_api(sync_timeout_s=300.0)
    api.queue.outcome = None
    register_stopping(api.client.app, lambda: True)  # type: ignore[arg-type]
    response = api.client.post("/v1/images/generations", json={"prompt": "a red circle"})
    assert response.status_code == 504, response.text
    assert "shut down" in response.json()["error"]["message"]
    assert response.headers["x-should-retry"] == "false"
    [job] = api.jobs()
    assert job.status == "queued"


def test_moderation_refusals_are_400_content_policy_violation(api: Api) -> None:
    checker = lexical_checker_for(api.settings.moderation_policy)
    prompt = next(p for p in BLOCK_CANDIDATES if checker.check(p).decision is Decision.BLOCK)
    blocked = api.client.post("/v1/images/generations", json={"prompt": prompt})
    assert blocked.status_code == 400
    assert blocked.json()["error"]["code"] == "content_policy_violation"
    assert api.queue.sent == []

    api.queue.outcome = "rejected"  # the worker's checks refuse it
    rejected = api.client.post("/v1/images/generations", json={"prompt": "a red circle"})
    assert rejected.status_code == 400
    assert rejected.json()["error"]["code"] == "content_policy_violation"
    job_id = rejected.headers["x-unclip-job-id"]
    assert job_id in rejected.json()["error"]["message"]
    assert rejected.headers["x-should-retry"] == "false"


def test_failed_job_is_an_error_with_the_job_id(api: Api) -> None:
    api.queue.outcome = "failed"
    response = api.client.post("/v1/images/generations", json={"prompt": "a red circle"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "out_of_memory" and "CUDA out of memory" in error["message"]
    assert response.headers["x-unclip-job-id"] == api.jobs()[0].id
    assert response.headers["x-should-retry"] == "false"


def test_openapi_documents_the_image_bodies(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    generations = spec["paths"]["/v1/images/generations"]["post"]
    assert "application/json" in generations["requestBody"]["content"]
    for path in ("/v1/images/edits", "/v1/images/variations"):
        assert "multipart/form-data" in spec["paths"][path]["post"]["requestBody"]["content"]
    assert {"200", "202", "400", "504"} <= set(generations["responses"])
    assert "/v1/models" in spec["paths"]


def test_idempotency_key_replays_the_first_job(api: Api) -> None:
    headers = {"Idempotency-Key": "gen-1"}
    body = {"prompt": "a red circle", "response_format": "b64_json"}
    first = api.client.post("/v1/images/generations", json=body, headers=headers)
    again = api.client.post("/v1/images/generations", json=body, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert first.headers["x-unclip-job-id"] == again.headers["x-unclip-job-id"]
    assert first.json()["data"] == again.json()["data"]
    other = api.client.post("/v1/images/generations", json={**body, "n": 2}, headers=headers)
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_mismatch"
    assert len(api.jobs()) == 1


def test_waiting_requests_hold_no_threads(make_api: Callable[..., Api]) -> None:
    """More sync requests wait than the thread pool has threads, and the API still answers."""
    api = make_api(sync_timeout_s=5.0)
    api.queue.outcome = None  # nobody renders: every request waits until its timeout
    waiting = THREAD_POOL_SIZE + 5
    order: list[str] = []

    async def run() -> None:
        app = api.client.app
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:

            async def generate() -> None:
                response = await client.post("/v1/images/generations", json={"prompt": "x"})
                order.append(f"generate {response.status_code}")

            tasks = [asyncio.create_task(generate()) for _ in range(waiting)]
            while len(api.queue.sent) < waiting:  # every request has its job and waits
                await asyncio.sleep(0.05)
            models = await client.get("/v1/models")  # a sync route: it needs a free thread
            order.append(f"models {models.status_code}")
            await asyncio.gather(*tasks)

    asyncio.run(run())
    assert order[0] == "models 200"
    assert order[1:] == ["generate 504"] * waiting


@pytest.mark.parametrize(
    ("outcome", "status", "code", "says"),
    [("cancelled", 409, "job_cancelled", "cancelled"), ("held", 504, "timeout", "held")],
)
def test_cancelled_or_held_job_answers_with_the_job_id(
    make_api: Callable[..., Api], outcome: str, status: int, code: str, says: str
) -> None:
    api = make_api(sync_timeout_s=0.5)
    api.queue.outcome = outcome
    response = api.client.post("/v1/images/generations", json={"prompt": "a red circle"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and says in error["message"]
    assert response.headers["x-unclip-job-id"] == api.jobs()[0].id
    assert response.headers["x-should-retry"] == "false"
