"""A worker's model family: loaded once per process, from settings.family, on its device."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import torch

from shared.settings import Settings

if TYPE_CHECKING:
    from worker.unclip.family import Family

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

_lock = threading.Lock()


class FamilyUnavailable(RuntimeError):
    """The worker's model family cannot be loaded (a deployment problem, not the request's)."""


_cache: dict[tuple[str, str, str], Family] = {}


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when a GPU is visible, else cpu; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FamilyUnavailable(
            "UNCLIP_DEVICE=cuda but no CUDA device is visible; use cuda on a GPU host, cpu or auto"
        )
    return torch.device(name)


def resolve_dtype(device: torch.device, name: str) -> torch.dtype:
    """Half precision only on a GPU; a CPU worker computes in float32 whatever is asked."""
    if device.type == "cpu" and name != "float32":
        log.warning("UNCLIP_DTYPE=%s on a CPU worker; using float32", name)
        return torch.float32
    return DTYPES[name]


def _load(settings: Settings, device: torch.device, dtype: torch.dtype) -> Family:
    from worker.unclip.family import load_family

    path = settings.family
    if (path / "family.json").is_file():
        return load_family(path, device, dtype)
    if settings.env == "production":
        # Random weights make noise that looks like a working service: never in production.
        raise FamilyUnavailable(
            f"no trained model family at {path} (UNCLIP_FAMILY has no family.json); production "
            "never falls back to random weights: point UNCLIP_FAMILY at a family directory"
        )
    from worker.unclip.reference_family import make_reference_family

    log.warning(
        "no trained model family at %s (UNCLIP_FAMILY); rendering with the random-weight "
        "reference family instead: images will be noise",
        path,
    )
    return make_reference_family(device=device, dtype=dtype)


def get_family(settings: Settings) -> Family:
    """The family settings name, loaded on first use in this process and kept."""
    device = resolve_device(settings.device)
    dtype = resolve_dtype(device, settings.dtype)
    key = (str(settings.family), str(device), str(dtype))
    with _lock:
        if key not in _cache:
            log.info("loading model family %s on %s (%s)", settings.family, device, dtype)
            try:
                _cache[key] = _load(settings, device, dtype)
            except Exception as exc:
                raise FamilyUnavailable(
                    f"cannot load the model family {settings.family} (UNCLIP_FAMILY): {exc}"
                ) from exc
        return _cache[key]
