"""A stored CLIP image embedding as bytes: one row of a stage output, or a job's own (1, D) copy.

The worker writes stage outputs with worker/tasks/payloads.py (safetensors, one tensor "x");
the API reads them here with NumPy (no torch), and writes a job's input copy the same way, so
the worker reads it back with payloads.decode_tensor.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from safetensors.numpy import load, save

TENSOR_KEY = "x"
PAYLOAD_FORMAT = "unclip-stage-output/1"  # of every stage output (worker/tasks/payloads.py)


def read_row(blob: bytes, row: int) -> NDArray[np.float32]:
    """Row `row` of a stored (n, D) payload, as float32 (D,); ValueError if it has none."""
    try:
        tensors = load(blob)
    except Exception as exc:  # safetensors raises its own error types for bad bytes
        raise ValueError(f"the stored embedding is not a safetensors payload: {exc}") from exc
    x = tensors.get(TENSOR_KEY)
    if x is None or x.ndim != 2 or not 0 <= row < x.shape[0]:
        raise ValueError(f"the stored embedding payload has no row {row}")
    return np.ascontiguousarray(x[row], dtype=np.float32)


def vector_payload(vector: NDArray[np.float32]) -> bytes:
    """One (D,) vector as a (1, D) float32 payload the worker reads as a stage output."""
    data = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
    return save({TENSOR_KEY: data}, metadata={"format": PAYLOAD_FORMAT, "stage": "input"})
