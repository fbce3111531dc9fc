"""The -o folder of `submit --wait` and `watch`: checked before the job, the PNGs saved in it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared.client.api_client import ApiClient, ClientError


def prepare_output_dir(path: Path) -> Path:
    """Create the folder (and its parents) now, so a bad -o fails before any rendering."""
    if path.exists() and not path.is_dir():
        raise ClientError(f"-o {path}: is a file, not a folder; give a folder for the PNGs "
                          "(it is created if missing)")  # fmt: skip
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClientError(f"-o {path}: cannot create the folder: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise ClientError(f"-o {path}: the folder is not writable; give one you can write to")
    return path


def save_images(client: ApiClient, job: dict[str, Any], out_dir: Path) -> list[Path]:
    """The job's published images written as `<job id>_<index>.png` in out_dir."""
    prepare_output_dir(out_dir)
    paths = []
    for image in job.get("images") or []:
        path = out_dir / f"{job['id']}_{image['index']}.png"
        data = client.download(image["url"])
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise ClientError(f"cannot save {path}: {exc.strerror or exc}") from exc
        paths.append(path)
    return paths
