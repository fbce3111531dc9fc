"""The web UI at /ui in a real browser (Playwright driving Debian's Chromium) on the embedded stack.

No browser is a failure, not a skip: `make test` installs Chromium when it can.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from shared.db import verdicts as ledger
from shared.db.models import Job, JobImage
from shared.moderation.verdict import Decision, Verdict
from shared.storage.factory import make_storage

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "ui"
CHROMIUM = os.environ.get("UNCLIP_TEST_CHROMIUM", "/usr/bin/chromium")
JOB_TIMEOUT_MS = 240_000
# Chromium as root on a closed network: no sandbox, no background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}; `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, embedded_stack: Any) -> Iterator[Any]:
    context = browser.new_context(base_url=str(embedded_stack.client.base_url).rstrip("/"),
                                  viewport={"width": 1200, "height": 900})  # fmt: skip
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


def _png(colour: tuple[int, int, int], size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _fill_small(page: Any, prompt: str | None = None) -> None:
    if prompt is not None:
        page.get_by_label("Prompt").fill(prompt)
    page.get_by_label("Size").select_option("64x64")
    page.get_by_label("Steps (prior,decoder,upsampler)").fill("2,2,2")


def _last_result(page: Any) -> Any:
    return page.locator(".results article.job").first


def _wait_status(card: Any, status: str) -> None:
    card.locator(f".badge-{status}").wait_for(timeout=JOB_TIMEOUT_MS)


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_generate_and_see_the_image(page: Any) -> None:
    page.goto("/ui#/create")
    _fill_small(page, "a red circle on a white background")
    page.get_by_role("button", name="Generate").click()
    card = _last_result(page)
    _wait_status(card, "succeeded")
    image = card.get_by_role("img", name="a red circle on a white background")
    image.wait_for()
    assert page.evaluate("(img) => img.complete && img.naturalWidth", image.element_handle()) == 64
    _shot(page, "create")

    job_id = card.get_attribute("data-job")
    page.goto("/ui#/gallery")
    page.get_by_role("img", name="a red circle on a white background").first.wait_for()
    _shot(page, "gallery")
    page.locator(f"article.job[data-job='{job_id}'] header a").click()
    page.get_by_role("heading", name="Parameters").wait_for()
    manifest = page.get_by_role("region", name="Manifest").locator("pre")
    manifest.wait_for()
    assert "seed" in manifest.inner_text()
    _shot(page, "job")
    # Replay makes a new job of the same parameters and shows it.
    page.get_by_role("button", name="Replay").click()
    page.wait_for_url(lambda url: "/jobs/" in url and job_id not in url)
    replayed = page.locator("article.job").first
    _wait_status(replayed, "succeeded")
    assert replayed.get_attribute("data-job") != job_id


def test_vary_an_uploaded_png(page: Any) -> None:
    page.goto("/ui#/create")
    _fill_small(page)
    page.get_by_label("Image").set_input_files(
        files=[{"name": "in.png", "mimeType": "image/png", "buffer": _png((30, 90, 200))}]
    )
    page.get_by_role("img", name="Chosen image").wait_for()
    page.get_by_role("button", name="Vary").click()
    card = _last_result(page)
    _wait_status(card, "succeeded")
    assert card.locator(".images img").count() == 1


def test_paint_a_mask_edit_and_see_the_result(page: Any, embedded_stack: Any) -> None:
    page.goto("/ui#/create")
    _fill_small(page, "a blue square")
    page.get_by_label("Image").set_input_files(
        files=[{"name": "in.png", "mimeType": "image/png", "buffer": _png((200, 30, 30))}]
    )
    mask = page.get_by_role("img", name="Mask")
    mask.wait_for()
    box = mask.bounding_box()
    page.get_by_label("Brush size").fill("20")
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(centre_x - 40, centre_y)
    page.mouse.down()
    page.mouse.move(centre_x + 40, centre_y, steps=8)
    page.mouse.up()
    _shot(page, "mask")
    page.get_by_role("button", name="Edit").click()
    card = _last_result(page)
    _wait_status(card, "succeeded")
    job_id = card.get_attribute("data-job")

    # The mask the page sent: transparent where painted (the centre), opaque in the corners.
    with embedded_stack.sessions() as session:
        job = session.get_one(Job, job_id)
        assert job.kind == "edit" and job.mask_key
        key = job.mask_key
    data = make_storage(embedded_stack.settings).get_bytes(key)
    alpha = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))[..., 3]
    assert alpha[32, 32] == 0 and alpha[0, 0] == 255 and alpha[63, 63] == 255


def test_more_like_this_on_a_job_sent_without_a_size(page: Any, embedded_stack: Any) -> None:
    """A job made over the API with no size (CLI, curl, the openai client) records none:
    the button's variation must not send size "null"."""
    made = embedded_stack.client.post("/v1/jobs", json={
        "prompt": "a yellow square", "steps": {"prior": 1, "decoder": 1, "upsampler": 1}})
    assert made.status_code == 202, made.text
    job_id = made.json()["id"]
    page.goto(f"/ui#/jobs/{job_id}")
    original = page.locator(f"article.job[data-job='{job_id}']")
    _wait_status(original, "succeeded")
    page.get_by_role("button", name="More like this").first.click()
    page.wait_for_url(lambda url: "/jobs/" in url and job_id not in url)
    variation = page.locator("article.job").first
    variation.wait_for()
    new_id = variation.get_attribute("data-job")
    job = embedded_stack.client.get(f"/v1/jobs/{new_id}").json()
    assert job["kind"] == "variation" and job["size"] is None


def test_cancel_a_running_job(page: Any) -> None:
    page.goto("/ui#/create")
    _fill_small(page, "a green star")
    page.get_by_label("Steps (prior,decoder,upsampler)").fill("100,200,2")
    page.get_by_role("button", name="Generate").click()
    card = _last_result(page)
    card.get_by_role("button", name="Cancel").first.click()
    _wait_status(card, "cancelled")


def _admin_key(stack: Any) -> str:
    """A new admin key made with `unclip keys create --admin` (its secret is the last line)."""
    env = {**os.environ, "UNCLIP_DATA_DIR": str(stack.settings.data_dir),
           "UNCLIP_DATABASE_URL": stack.settings.database_url}  # fmt: skip
    made = subprocess.run(
        [sys.executable, "-m", "shared.cli", "keys", "create", "--name", "ui-admin", "--admin"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return made.stdout.strip().splitlines()[-1]


def _held_job(stack: Any) -> str:
    """A job the output check held: a real PNG stored, not published, with its verdict."""
    storage = make_storage(stack.settings)
    verdict = Verdict(stage="output_image", checker="image", checker_version="image/1",
                      policy_version="ui-test", decision=Decision.HOLD,
                      scores={"a black star": 0.41}, thresholds={"a black star": 0.3},
                      flagged=("violence",))  # fmt: skip
    with stack.sessions.begin() as session:
        job = Job(kind="generate", prompt="a black star", n=1, size="64x64", seed=1,
                  sampler="ddim", steps_prior=1, steps_decoder=1, steps_upsampler=1,
                  prior_guidance=1.0, decoder_guidance=1.0, status="held", attempt=1,
                  status_reason=verdict.reason_code)  # fmt: skip
        session.add(job)
        session.flush()
        key = f"jobs/{job.id}/attempt-1/images/0.png"
        storage.put_bytes(key, _png((10, 10, 10)), "image/png")
        session.add(JobImage(job_id=job.id, index=0, attempt=1, storage_key=key, width=64,
                             height=64, published=False))  # fmt: skip
        ledger.record_verdict(session=session, job_id=job.id, verdict=verdict)
        return job.id


def test_admin_releases_a_held_job(page: Any, embedded_stack: Any) -> None:
    job_id = _held_job(embedded_stack)
    page.goto("/ui#/admin")
    # The keyless principal is no admin: the server answers 401 and the page asks for a key.
    page.get_by_role("alert").wait_for()
    dialog = page.get_by_role("dialog", name="API key")
    dialog.wait_for()
    dialog.get_by_label("API key").fill(_admin_key(embedded_stack))
    dialog.get_by_role("button", name="Save").click()
    card = page.locator(f"article.job[data-job='{job_id}']")
    card.wait_for()
    assert "a black star" in card.locator("table.verdicts").inner_text()
    _shot(page, "admin")
    card.get_by_label("Reason").fill("a harmless shape")
    card.get_by_role("button", name="Release").click()
    card.wait_for(state="detached")
    with embedded_stack.sessions() as session:
        assert session.get_one(Job, job_id).status == "succeeded"


def test_a_held_job_shows_why_and_can_be_cancelled(page: Any, embedded_stack: Any) -> None:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)  # fmt: skip
    job_id = _held_job(embedded_stack)
    page.goto(f"/ui#/jobs/{job_id}")
    card = page.locator(f"article.job[data-job='{job_id}']")
    reason = card.locator(".job-moderation")
    reason.wait_for()
    assert "Held for review: violence" in reason.inner_text()
    assert "output image" in reason.inner_text()
    card.get_by_role("button", name="Cancel").first.click()
    _wait_status(card, "cancelled")
    with embedded_stack.sessions() as session:
        assert session.get_one(Job, job_id).status == "cancelled"
    assert errors == []  # no failed resource loads (the favicon included), no script errors
