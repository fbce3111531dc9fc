"""Storage key layout: every key names its job, and outputs name the attempt that wrote them."""

from __future__ import annotations

import re

from shared.errors import InvalidStorageKey

_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _part(value: str, what: str) -> str:
    if not _PART.match(value) or ".." in value:
        raise InvalidStorageKey(
            f"{what} {value!r} cannot be part of a storage key; use 1-128 characters of "
            "letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'"
        )
    return value


def _attempt(attempt: int) -> str:
    if attempt < 0:
        raise InvalidStorageKey(f"attempt {attempt} is negative; attempts count from 0")
    return f"attempt-{attempt}"


def job_prefix(job_id: str) -> str:
    """The folder of everything one job stores: 'jobs/<job_id>/'."""
    return f"jobs/{_part(job_id, 'job id')}/"


def input_key(job_id: str, name: str) -> str:
    """An uploaded input (image or mask): jobs/<id>/inputs/<name>."""
    return f"{job_prefix(job_id)}inputs/{_part(name, 'input name')}"


def stage_output_key(job_id: str, attempt: int, stage: str, name: str) -> str:
    """A stage's intermediate output: jobs/<id>/attempt-<k>/<stage>/<name>."""
    return f"{job_prefix(job_id)}{_attempt(attempt)}/{_part(stage, 'stage')}/{_part(name, 'name')}"


def image_key(job_id: str, attempt: int, index: int) -> str:
    """Final PNG number `index` of a job: jobs/<id>/attempt-<k>/images/<index>.png."""
    if index < 0:
        raise InvalidStorageKey(f"image index {index} is negative; indexes count from 0")
    return f"{job_prefix(job_id)}{_attempt(attempt)}/images/{index}.png"
