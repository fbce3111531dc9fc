"""Stage outputs as safetensors bytes: prior image embeddings, decoder low-res tensors."""

from __future__ import annotations

import torch
from safetensors.torch import load, save

from shared.embedding_payload import PAYLOAD_FORMAT
from shared.embedding_payload import TENSOR_KEY as _TENSOR_KEY  # the API reads them too


def encode_tensor(x: torch.Tensor, *, stage: str) -> bytes:
    """Serialise one stage output (kept in float32 so a resumed stage sees the same values)."""
    data = x.detach().to(device="cpu", dtype=torch.float32).contiguous()
    return save({_TENSOR_KEY: data}, metadata={"format": PAYLOAD_FORMAT, "stage": stage})


def decode_tensor(blob: bytes, *, stage: str, expected_rows: int | None = None) -> torch.Tensor:
    """Read a stage output written by `encode_tensor`, checking it is what the caller expects."""
    try:
        tensors = load(blob)
    except Exception as exc:  # safetensors raises its own error types for bad bytes
        raise ValueError(f"stored {stage} output is not a safetensors payload: {exc}") from exc
    if _TENSOR_KEY not in tensors:
        raise ValueError(
            f"stored {stage} output has tensors {sorted(tensors)}; "
            f"expected one named {_TENSOR_KEY!r}"
        )
    x = tensors[_TENSOR_KEY]
    if expected_rows is not None and x.shape[0] != expected_rows:
        raise ValueError(
            f"stored {stage} output has {x.shape[0]} rows; the job asks for {expected_rows}"
        )
    return x
