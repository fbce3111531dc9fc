"""Warm starts: begin a stage's training from the weights of an exported model family."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file
from torch import nn


def load_weights(module: nn.Module, path: Path) -> None:
    """Load a family's safetensors file (any float dtype) into `module`, keeping its dtype.

    Every key must match: a family of another config is refused with the mismatch named.
    """
    if not path.is_file():
        raise FileNotFoundError(f"warm start: {path} not found (is it a model family folder?)")
    own = module.state_dict()
    state = load_file(str(path))
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or wrong:
        raise ValueError(
            f"warm start: {path} does not fit this network: missing {missing[:5]}, "
            f"unexpected {extra[:5]}, other shapes {wrong[:5]}"
        )
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
