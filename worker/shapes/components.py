"""Connected components of a boolean image (8-connected), in numpy alone."""

from __future__ import annotations

import numpy as np


def _neighbour_min(labels: np.ndarray, big: int) -> np.ndarray:
    """Each pixel's smallest label over its 3x3 neighbourhood."""
    padded = np.pad(labels, 1, constant_values=big)
    h, w = labels.shape
    out = labels.copy()
    for dy in range(3):
        for dx in range(3):
            np.minimum(out, padded[dy : dy + h, dx : dx + w], out=out)
    return out


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(labels, count): labels 1..count for the 8-connected components of `mask`, 0 elsewhere."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    h, w = mask.shape
    big = h * w
    labels = np.where(mask, np.arange(big).reshape(h, w), big)
    flat_index = np.append(np.arange(big), big)  # label -> the label of its own pixel
    while True:
        spread = np.where(mask, _neighbour_min(labels, big), big)
        # Pointer jumping: follow each label to its pixel's current label, repeatedly.
        flat_index[:big] = spread.ravel()
        jumped = flat_index[flat_index[spread]]
        if np.array_equal(jumped, labels):
            break
        labels = jumped
    roots, dense = np.unique(labels[mask], return_inverse=True)
    out = np.zeros((h, w), dtype=np.int32)
    out[mask] = dense + 1
    return out, len(roots)
