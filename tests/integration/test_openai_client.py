"""The official `openai` client against the running app: uvicorn on a free port, a real worker.

Embedded mode (SQLite, the filesystem broker, local storage) with the tiny reference family;
API keys required. A second app with a one-second sync timeout and no worker shows the 504.
"""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import uvicorn
from openai import OpenAI
from PIL import Image, ImageDraw
from sqlalchemy import func, select

from api.app import create_app
from shared.db import api_keys as key_store
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.db.models import Job
from shared.family_info import family_info
from shared.settings import Settings
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
READY_S = 180.0
JOB_TIMEOUT_S = 240.0
KEY_SECRET = "k" * 32


class Server:
    """create_app(settings) served by uvicorn in a thread of this process."""

    def __init__(self, settings: Settings, port: int) -> None:
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + READY_S
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                pytest.fail(f"uvicorn did not start on port {port}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _settings(data_dir: Path, family: Path, port: int, **overrides: Any) -> Settings:
    return Settings(
        data_dir=data_dir, family=family, public_base_url=f"http://127.0.0.1:{port}",
        api_key_secret=KEY_SECRET, url_signing_secret="u" * 32, progress_interval_s=0.05,
        heartbeat_interval_s=1.0, heartbeat_stale_s=4.0, **overrides,
    )  # fmt: skip


def _start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        UNCLIP_DATA_DIR=str(settings.data_dir), UNCLIP_DATABASE_URL=settings.database_url,
        UNCLIP_BROKER_URL=settings.broker_url, UNCLIP_STORAGE_URL=settings.storage_url,
        UNCLIP_FAMILY=str(settings.family), UNCLIP_DEVICE="cpu", PYTHONUNBUFFERED="1",
        UNCLIP_PROGRESS_INTERVAL_S="0.05", UNCLIP_HEARTBEAT_INTERVAL_S="1.0",
        UNCLIP_HEARTBEAT_STALE_S="4.0",
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "worker", "--queues", "prior,decoder,upsampler"],
        cwd=REPO, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + READY_S
    while " ready." not in log_path.read_text(errors="replace"):
        if worker.poll() is not None or time.monotonic() > deadline:
            _stop(worker)
            pytest.fail(
                f"the worker did not start:\n{log_path.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.3)
    return worker


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Stack:
    base_url: str
    settings: Settings
    keys: dict[str, str]  # key name -> secret

    def client(self, key: str, **options: Any) -> OpenAI:
        options.setdefault("max_retries", 0)
        return OpenAI(base_url=f"{self.base_url}/v1", api_key=self.keys.get(key, key),
                      timeout=JOB_TIMEOUT_S, **options)  # fmt: skip

    def job_count(self) -> int:
        engine = make_engine(self.settings)
        with engine.connect() as connection:
            count = connection.execute(select(func.count()).select_from(Job)).scalar_one()
        engine.dispose()
        return int(count)


def _make_keys(settings: Settings, rpms: dict[str, int | None]) -> dict[str, str]:
    engine = make_engine(settings)
    with make_sessionmaker(engine).begin() as session:
        keys = {
            name: key_store.create_key(session=session, server_secret=KEY_SECRET, name=name,
                                       rpm=rpm).secret
            for name, rpm in rpms.items()
        }  # fmt: skip
    engine.dispose()
    return keys


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_family_dir: Path) -> Iterator[Stack]:
    """Keys required; keys a and b (generous rpm) and c (rpm 1); a worker on all queues."""
    data_dir = tmp_path_factory.mktemp("openai")
    port = free_port()
    settings = _settings(data_dir, tiny_family_dir, port, require_api_keys=True)
    upgrade(settings)
    keys = _make_keys(settings, {"a": 1000, "b": 1000, "c": 1})
    worker = _start_worker(settings, data_dir / "worker.log")
    server = Server(settings, port)
    try:
        yield Stack(f"http://127.0.0.1:{port}", settings, keys)
    finally:
        server.stop()
        _stop(worker)


@pytest.fixture(scope="module")
def idle_stack(tmp_path_factory: pytest.TempPathFactory, tiny_family_dir: Path) -> Iterator[Stack]:
    """No worker, a one-second sync timeout."""
    data_dir = tmp_path_factory.mktemp("openai-idle")
    port = free_port()
    settings = _settings(data_dir, tiny_family_dir, port, sync_timeout_s=1.0)
    upgrade(settings)
    keys = _make_keys(settings, {"a": 1000})  # the client always sends a key
    server = Server(settings, port)
    try:
        yield Stack(f"http://127.0.0.1:{port}", settings, keys)
    finally:
        server.stop()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _open_png(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _native_side(stack: Stack) -> int:
    info = family_info(stack.settings.family.resolve())
    assert info is not None
    return int(info.native_size.partition("x")[0])


def test_generate_in_url_and_b64_json_formats(stack: Stack) -> None:
    client = stack.client("a")
    side = _native_side(stack)
    result = client.images.generate(prompt="a red circle", n=2, response_format="url")
    assert result.data is not None and len(result.data) == 2
    for item in result.data:
        assert item.url is not None and item.url.startswith(f"{stack.base_url}/v1/jobs/")
        # A browser or curl: no Authorization header.
        fetched = httpx.get(item.url)
        assert fetched.status_code == 200, fetched.text
        assert _open_png(fetched.content).size == (side, side)
    tampered = httpx.get(result.data[0].url.replace("signature=", "signature=0"))
    assert tampered.status_code == 403 and tampered.json()["error"]["code"] == "invalid_signature"

    b64 = client.images.generate(prompt="a blue square", model="dall-e-2",
                                 response_format="b64_json")  # fmt: skip
    assert b64.data is not None and b64.data[0].b64_json is not None
    assert _open_png(base64.b64decode(b64.data[0].b64_json)).size == (side, side)
    assert b64.created <= time.time() + 1


def test_edit_uses_the_images_alpha_and_variation(stack: Stack) -> None:
    client = stack.client("a")
    side = _native_side(stack)
    source = Image.new("RGBA", (side, side), (30, 160, 90, 255))
    ImageDraw.Draw(source).rectangle((side // 4, side // 4, 3 * side // 4 - 1, 3 * side // 4 - 1),
                                     fill=(0, 0, 0, 0))  # fmt: skip
    edited = client.images.edit(image=("in.png", _png(source), "image/png"), prompt="a star",
                                response_format="b64_json")  # fmt: skip
    assert edited.data is not None and edited.data[0].b64_json is not None
    result = np.asarray(_open_png(base64.b64decode(edited.data[0].b64_json)).convert("RGB"))
    keep = np.asarray(source)[..., 3] == 255
    # Outside the transparent area an edit returns exactly the given pixels.
    assert np.array_equal(result[keep], np.asarray(source.convert("RGB"))[keep])

    with pytest.raises(openai.BadRequestError) as refused:
        client.images.edit(image=("in.png", _png(source.convert("RGB")), "image/png"),
                           prompt="a star")  # fmt: skip
    assert "format must be in ['RGBA', 'LA', 'L'], got RGB" in str(refused.value)

    variation = client.images.create_variation(image=("in.png", _png(source.convert("RGB"))), n=1)
    assert variation.data is not None and variation.data[0].url is not None
    assert httpx.get(variation.data[0].url).status_code == 200


def test_models_list(stack: Stack) -> None:
    client = stack.client("a")
    info = family_info(stack.settings.family.resolve())
    assert info is not None
    ids = [model.id for model in client.models.list()]
    assert info.name in ids and "dall-e-2" in ids
    assert client.models.retrieve(info.name).owned_by


def test_bad_key_is_401(stack: Stack) -> None:
    client = stack.client("sk-unclip-not-a-key")
    before = stack.job_count()
    with pytest.raises(openai.AuthenticationError) as caught:
        client.images.generate(prompt="a red circle")
    assert caught.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert stack.job_count() == before  # the 401 came before any job


def test_respond_async_and_another_keys_job_is_404(stack: Stack) -> None:
    raw = stack.client("a").images.with_raw_response.generate(
        prompt="a green star", extra_headers={"Prefer": "respond-async"}
    )
    assert raw.status_code == 202
    job = raw.http_response.json()
    assert job["object"] == "job" and raw.headers["location"] == f"/v1/jobs/{job['id']}"
    with pytest.raises(openai.NotFoundError):
        stack.client("b").get(f"/jobs/{job['id']}", cast_to=httpx.Response)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        own = stack.client("a").get(f"/jobs/{job['id']}", cast_to=httpx.Response)
        assert own.status_code == 200 and own.json()["id"] == job["id"]
        if own.json()["status"] == "succeeded" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    [image] = own.json()["images"]
    # The job object's image URLs are signed too: fetchable without a key, by anyone.
    assert httpx.get(image["url"]).status_code == 200


def test_rate_limit_is_429_with_retry_after(stack: Stack) -> None:
    client = stack.client("c")
    first = client.images.with_raw_response.generate(
        prompt="a red circle", extra_headers={"Prefer": "respond-async"}
    )
    assert first.status_code == 202
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.generate(prompt="a red circle")
    headers = caught.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"


def test_past_the_sync_timeout_504_names_the_job_and_is_not_retried(idle_stack: Stack) -> None:
    client = idle_stack.client("a", max_retries=2)
    with pytest.raises(openai.InternalServerError) as caught:
        client.images.generate(prompt="a red circle")
    assert caught.value.status_code == 504 and caught.value.code == "timeout"
    job_id = caught.value.response.headers["x-unclip-job-id"]
    assert job_id in caught.value.message
    assert idle_stack.job_count() == 1  # x-should-retry: false kept the client from resubmitting
