"""What a family directory says about itself, read as plain JSON (no torch): name, defaults, size.

The API reads it to report a job's native size before any worker runs; the worker fills a
job's parameters from the loaded family itself (worker/tasks/job_spec.py), which reads the
same family.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.errors import ConfigurationError
from shared.job_params import SamplingDefaults, Steps


@dataclass(frozen=True)
class FamilyInfo:
    """A family's name, its sampling defaults and the size its upsampler makes."""

    name: str
    native_size: str  # "64x64"
    defaults: SamplingDefaults


def _read_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _native_size(root: Path, meta: dict[str, Any]) -> str:
    """family.json's native_size; else the upsampler config's image_size (older families)."""
    declared = meta.get("native_size")
    if declared is not None:
        width, sep, height = str(declared).partition("x")
        if not (sep and width.isdigit() and height.isdigit()):
            raise ConfigurationError(
                f"{root / 'family.json'}: native_size {declared!r} is not WIDTHxHEIGHT like '64x64'"
            )
        return str(declared)
    side = _read_object(root / "upsampler.json").get("image_size")
    if not isinstance(side, int) or side < 1:
        raise ConfigurationError(
            f"{root / 'upsampler.json'}: image_size {side!r} is not a positive integer"
        )
    return f"{side}x{side}"


def _defaults(root: Path, meta: dict[str, Any]) -> SamplingDefaults:
    raw = dict(meta.get("defaults", {}))
    raw.pop("prior_candidates", None)  # the worker's prior reranking, not a job parameter
    steps = raw.get("steps", [10, 10, 4])
    try:
        if isinstance(steps, list) and len(steps) == 3:
            raw["steps"] = Steps(prior=steps[0], decoder=steps[1], upsampler=steps[2])
        raw.setdefault("sampler", "ddim")
        raw.setdefault("prior_guidance", 4.0)
        raw.setdefault("decoder_guidance", 8.0)
        return SamplingDefaults.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(f"{root / 'family.json'}: bad defaults: {exc}") from exc


def read_family_info(path: Path) -> FamilyInfo:
    """The family at `path` (a directory holding family.json); ConfigurationError if unreadable."""
    meta = _read_object(path / "family.json")
    return FamilyInfo(
        name=str(meta.get("name", path.name)),
        native_size=_native_size(path, meta),
        defaults=_defaults(path, meta),
    )


@lru_cache(maxsize=8)
def family_info(path: Path) -> FamilyInfo | None:
    """The family at `path`, read once per process; None when no family.json is there."""
    if not (path / "family.json").is_file():
        return None
    return read_family_info(path)
