"""`make demo`: start the embedded stack, render a text job, a variation and an edit over HTTP.

Starts `unclip up` on a free port with a temporary data dir, submits the three jobs through
the HTTP API, polls them to completion, saves every image and a contact sheet, prints where
they are and stops the stack. Exits 0 only when all three jobs succeeded.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 180.0
JOB_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 90.0
TERMINAL = {"succeeded", "failed", "cancelled", "rejected"}


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_stack(port: int, data_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`unclip up` in its own session (so a terminal Ctrl-C reaches it only through us)."""
    env = dict(os.environ, UNCLIP_DATA_DIR=str(data_dir))
    env.setdefault("UNCLIP_FAMILY", str(REPO / "models" / "shapes"))
    command = [sys.executable, "-m", "shared.cli", "up", "--host", "127.0.0.1", "--port", str(port)]
    log = log_path.open("wb")
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_stack(stack: subprocess.Popen[bytes]) -> int:
    """SIGTERM `unclip up` (it stops the API and the worker) and wait for it."""
    if stack.poll() is None:
        stack.send_signal(signal.SIGTERM)
        try:
            stack.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()
    return stack.returncode


def wait_ready(client: httpx.Client, stack: subprocess.Popen[bytes]) -> None:
    """Poll /readyz until the database and the broker answer."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if stack.poll() is not None:
            raise RuntimeError(f"`unclip up` exited with {stack.returncode} before it was ready")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the stack was not ready within {READY_TIMEOUT_S:.0f} s")


def submit(client: httpx.Client, fields: dict[str, Any], files: dict[str, bytes]) -> str:
    """POST /v1/jobs: JSON without uploads, multipart/form-data with them; the new job's id."""
    if files:
        parts = {name: (f"{name}.png", data, "image/png") for name, data in files.items()}
        form = {name: str(value) for name, value in fields.items()}
        response = client.post("/v1/jobs", data=form, files=parts)
    else:
        response = client.post("/v1/jobs", json=fields)
    if response.status_code != 202:
        raise RuntimeError(
            f"POST /v1/jobs {fields} answered {response.status_code}: {response.text}"
        )
    return str(response.json()["id"])


def wait_job(client: httpx.Client, job_id: str, label: str) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until the job ends; its final JSON."""
    deadline, last = time.monotonic() + JOB_TIMEOUT_S, ""
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        state = str(job["status"])
        if state != last:
            print(f"  {label}: {state} ({job['progress']:.0%})", flush=True)
            last = state
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.5)
    raise TimeoutError(f"{label} job {job_id} did not finish within {JOB_TIMEOUT_S:.0f} s")


def fetch_images(client: httpx.Client, job: dict[str, Any], out: Path, label: str) -> list[Path]:
    """Download every image of a finished job as out/<label>-<index>.png."""
    if job["status"] != "succeeded":
        raise RuntimeError(f"{label} job {job['id']} ended {job['status']}: {job.get('error')}")
    paths = []
    for image in job["images"]:
        response = client.get(f"/v1/jobs/{job['id']}/images/{image['index']}")
        response.raise_for_status()
        path = out / f"{label}-{image['index']}.png"
        path.write_bytes(response.content)
        paths.append(path)
    return paths


def edit_mask(size: tuple[int, int]) -> bytes:
    """An RGBA mask, opaque except a transparent centre square (alpha 0 = repaint)."""
    width, height = size
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle(
        (width // 4, height // 4, 3 * width // 4 - 1, 3 * height // 4 - 1), fill=(0, 0, 0, 0)
    )
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


def contact_sheet(entries: list[tuple[str, Path]], path: Path, cell: int = 256) -> None:
    """One row of the images, each captioned with what produced it."""
    caption = 36
    sheet = Image.new("RGB", (cell * len(entries), cell + caption), "white")
    draw = ImageDraw.Draw(sheet)
    for column, (text, image_path) in enumerate(entries):
        with Image.open(image_path) as image:
            sheet.paste(image.convert("RGB").resize((cell, cell)), (column * cell, 0))
        draw.text((column * cell + 6, cell + 4), text[:40], fill="black")
    sheet.save(path)


def run_demo(client: httpx.Client, out: Path) -> list[Path]:
    """The three jobs, each built on the one before; the saved image paths."""
    prompt = "a red circle on a white background"
    print(f"text job: {prompt!r}", flush=True)
    text_id = submit(client, {"kind": "generate", "prompt": prompt, "seed": 1}, {})
    [text_png] = fetch_images(client, wait_job(client, text_id, "generate"), out, "generate")
    source = text_png.read_bytes()
    print("variation of the text job's image", flush=True)
    var_id = submit(client, {"kind": "variation", "seed": 2}, {"image": source})
    [var_png] = fetch_images(client, wait_job(client, var_id, "variation"), out, "variation")
    edit_prompt = "a blue square on a white background"
    print(f"edit of the text job's image inside a centre mask: {edit_prompt!r}", flush=True)
    with Image.open(text_png) as image:
        mask = edit_mask(image.size)
    (out / "edit-mask.png").write_bytes(mask)
    edit_id = submit(
        client,
        {"kind": "edit", "prompt": edit_prompt, "seed": 3},
        {"image": source, "mask": mask},
    )
    [edit_png] = fetch_images(client, wait_job(client, edit_id, "edit"), out, "edit")
    sheet = out / "contact_sheet.png"
    contact_sheet(
        [
            (f"generate: {prompt}", text_png),
            ("variation", var_png),
            (f"edit: {edit_prompt}", edit_png),
        ],
        sheet,
    )
    return [text_png, var_png, edit_png, sheet]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo", help="output folder")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    port, log_path = free_port(), out / "stack.log"
    with tempfile.TemporaryDirectory(prefix="unclip-demo-") as data_dir:
        print(f"starting `unclip up` on port {port} (data in {data_dir}, log {log_path})")
        stack = start_stack(port, Path(data_dir), log_path)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                wait_ready(client, stack)
                saved = run_demo(client, out)
        except Exception as exc:
            print(f"demo failed: {exc}", file=sys.stderr)
            print(f"--- last lines of {log_path} ---", file=sys.stderr)
            print(
                "\n".join(log_path.read_text(errors="replace").splitlines()[-40:]), file=sys.stderr
            )
            return 1
        finally:
            code = stop_stack(stack)
            print(f"stack stopped (exit {code})")
    if code != 0:
        print(f"`unclip up` did not stop cleanly (exit {code}); see {log_path}", file=sys.stderr)
        return 1
    print("demo images:")
    for path in saved:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
