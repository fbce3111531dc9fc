"""Training checkpoints: everything a cut-off run needs to continue, written atomically."""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "unclip-train-checkpoint/1"


@dataclass
class TrainState:
    """A stage's training state: weights, EMA, optimizer, progress and random states."""

    stage: str
    config: dict[str, Any]
    model: dict[str, Any]
    ema: dict[str, Any]
    optimizer: dict[str, Any]
    step: int
    elapsed_s: float
    rng: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **self.__dict__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a training checkpoint: format {data.get('format')!r}, "
                             f"expected {FORMAT!r}")
        return cls(**{k: v for k, v in data.items() if k != "format"})


def checkpoint_path(stage_dir: Path) -> Path:
    return Path(stage_dir) / CHECKPOINT_NAME


def save_checkpoint(state: TrainState, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`.

    A run killed mid-write leaves the previous checkpoint intact (rename is atomic on POSIX).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state.to_dict(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> TrainState:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}")
    data = torch.load(path, map_location="cpu", weights_only=False)
    return TrainState.from_dict(data)


def capture_rng(noise: torch.Generator) -> dict[str, Any]:
    """Random states that influence training: torch (dropout), CUDA, numpy, python, noise."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "noise": noise.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], noise: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    noise.set_state(state["noise"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
