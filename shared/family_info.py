"""What a family directory says about itself, read as plain JSON (no torch): name, defaults, sizes.

The API reads it to report a job's native size before any worker runs; the worker fills a
job's parameters from the loaded family itself (worker/tasks/job_spec.py), which reads the
same family.json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.errors import ConfigurationError
from shared.job_params import SamplingDefaults, Steps


def native_side_for(sides: Sequence[int], requested: int | None) -> int:
    """The native side that serves a requested side: the smallest one at least as large (the
    upsampler cascade runs up to it), else the largest (then resized); None: the largest."""
    if not sides:
        raise ValueError("a family has at least one native size, got none")
    if requested is None:
        return max(sides)
    return min((s for s in sides if s >= requested), default=max(sides))


def side_of(size: str) -> int:
    """'256x256' -> 256 (square sizes only, as every family and job size is)."""
    width, sep, height = size.partition("x")
    if not (sep and width.isdigit() and width == height and int(width) > 0):
        raise ValueError(f"size {size!r} is not a square WIDTHxHEIGHT like '64x64'")
    return int(width)


@dataclass(frozen=True)
class FamilyInfo:
    """A family's name, its sampling defaults and the sizes its upsampler cascade makes."""

    name: str
    native_sizes: tuple[str, ...]  # ascending, e.g. ("64x64", "256x256")
    defaults: SamplingDefaults

    @property
    def native_size(self) -> str:
        """The largest native size: what the family makes at most."""
        return self.native_sizes[-1]

    def native_size_for(self, size: str | None) -> str:
        """The native size a request of `size` runs at (None: the largest); larger requests
        are resized from it, and say so."""
        sides = [side_of(s) for s in self.native_sizes]
        side = native_side_for(sides, None if size is None else side_of(size))
        return f"{side}x{side}"


def _read_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _checked_size(root: Path, key: str, declared: object) -> str:
    width, sep, height = str(declared).partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise ConfigurationError(
            f"{root / 'family.json'}: {key} {declared!r} is not WIDTHxHEIGHT like '64x64'"
        )
    return str(declared)


def _native_sizes(root: Path, meta: dict[str, Any]) -> tuple[str, ...]:
    """family.json's native_sizes (ascending); else its native_size (one size, older
    families); else the upsampler config's image_size (older still)."""
    declared = meta.get("native_sizes")
    if declared is not None:
        if not isinstance(declared, list) or not declared:
            raise ConfigurationError(
                f"{root / 'family.json'}: native_sizes must be a non-empty list like "
                f"['64x64', '256x256'], got {declared!r}"
            )
        sizes = [_checked_size(root, "native_sizes entry", d) for d in declared]
        return tuple(sorted(sizes, key=lambda s: int(s.partition("x")[0])))
    if meta.get("native_size") is not None:
        return (_checked_size(root, "native_size", meta["native_size"]),)
    side = _read_object(root / "upsampler.json").get("image_size")
    if not isinstance(side, int) or side < 1:
        raise ConfigurationError(
            f"{root / 'upsampler.json'}: image_size {side!r} is not a positive integer"
        )
    return (f"{side}x{side}",)


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
        native_sizes=_native_sizes(path, meta),
        defaults=_defaults(path, meta),
    )


@lru_cache(maxsize=8)
def family_info(path: Path) -> FamilyInfo | None:
    """The family at `path`, read once per process; None when no family.json is there."""
    if not (path / "family.json").is_file():
        return None
    return read_family_info(path)
