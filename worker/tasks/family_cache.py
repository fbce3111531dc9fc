"""A worker's model family: loaded once per process, from settings.family, on its device."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
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


_cache: dict[tuple[str, str, str, str, str], Family] = {}


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when a GPU is visible, else cpu; 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FamilyUnavailable(
            "UNCLIP_DEVICE=cuda but no CUDA device is visible; use cuda on a GPU host, cpu or auto"
        )
    return torch.device(name)


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 math


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), so bf16 is faster, not
    emulated: oneDNN's own check, or the flags in /proc/cpuinfo where torch cannot tell."""
    try:
        if bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            return True
    except (AttributeError, RuntimeError):
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def resolve_dtype(device: torch.device, name: str) -> torch.dtype:
    """float32 anywhere; bfloat16 and float16 on a GPU; bfloat16 on a CPU with native bf16."""
    if device.type != "cpu" or name == "float32":
        return DTYPES[name]
    if name == "bfloat16" and cpu_supports_bf16():
        return torch.bfloat16
    why = (
        "float16 is GPU-only"
        if name == "float16"
        else f"this CPU has no native bf16 ({' / '.join(CPU_BF16_FLAGS)})"
    )
    raise FamilyUnavailable(
        f"UNCLIP_DTYPE={name} on a CPU worker: {why}; use float32 here, or bfloat16 on a CPU "
        "with AVX512-BF16 or AMX"
    )


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
    key = (
        str(settings.family),
        str(device),
        str(dtype),
        str(settings.reproducible),
        str(settings.frozen_graphs),
    )
    with _lock:
        if key not in _cache:
            log.info("loading model family %s on %s (%s)", settings.family, device, dtype)
            try:
                family = _load(settings, device, dtype)
                family.reproducible = settings.reproducible  # before any render sees it
                family.frozen_graphs = settings.frozen_graphs
                after = settings.frozen_graphs_trace_after_calls
                if after is not None:
                    family.frozen_graphs_trace_after_calls = after
                _cache[key] = family
            except Exception as exc:
                raise FamilyUnavailable(
                    f"cannot load the model family {settings.family} (UNCLIP_FAMILY): {exc}"
                ) from exc
        return _cache[key]
