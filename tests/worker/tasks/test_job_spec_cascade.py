"""A job on the shipped cascade family runs to the native size its request needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.db.models import Job
from shared.family_info import read_family_info
from shared.job_params import FAMILY_FILLED_COLUMNS
from shared.storage.local import LocalStorage
from worker.tasks.job_spec import build_spec, params_used
from worker.unclip.family import load_family

SHIPPED = Path(__file__).resolve().parents[3] / "models" / "shapes"
pytestmark = pytest.mark.skipif(
    not (SHIPPED / "upsampler256.json").is_file(), reason="no shipped 64 -> 256 upsampler"
)


def _job(**fields: Any) -> Job:
    values: dict[str, Any] = {"id": "j", "kind": "generate", "prompt": "p", "n": 1, "seed": 9}
    return Job(**(values | dict.fromkeys(FAMILY_FILLED_COLUMNS) | fields))


@pytest.mark.parametrize(
    ("size", "native", "side", "resized"),
    [
        (None, "256x256", 256, False),
        ("64x64", "64x64", 64, False),
        ("256x256", "256x256", 256, False),
        ("1024x1024", "256x256", 256, True),
    ],
)
def test_the_worker_and_the_api_agree_on_the_native_size(
    size: str | None, native: str, side: int, resized: bool, tmp_path: Path
) -> None:
    family = load_family(SHIPPED)
    used = params_used(_job(size=size), family)
    assert (used.native_size, used.resized) == (native, resized)
    assert read_family_info(SHIPPED).native_size_for(size) == native  # what the API stored
    spec = build_spec(_job(size=size), LocalStorage(tmp_path), used)
    assert family.output_side(spec.size) == side
