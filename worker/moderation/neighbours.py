"""The semantic head's memory of the tuning set: similarities to the nearest tuning prompts.

A prompt close to a labelled tuning prompt (the same request reworded, another wrapper around
the same scene) is judged much like it; the head reads, beside its other features, the best
similarity to the tuning prompts of each class, the mean of the `k` best unsafe and benign
ones, and the unsafe share of the five nearest. The tuning prompts' unit MiniLM embeddings are
stored in the head file (float16, base64) with their classes. In training every row's
features leave out its own group (`exclude`), as a prompt at check time is not in the set, so
the head does not learn to trust a similarity of 1.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

NEIGHBOURS_FORMAT = "unclip-moderation-neighbours/1"
NEAREST = 5  # rows whose unsafe share is a feature


class NeighbourError(ValueError):
    """A neighbour table that cannot be used; the message names the field."""


def neighbour_features(
    reference: torch.Tensor,
    labels: torch.Tensor,
    classes: Sequence[str],
    queries: torch.Tensor,
    *,
    benign: str = "benign",
    k: int = 3,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """(Q, len(classes) + 4) features of unit `queries` (Q, D) against `reference` (R, D).

    `labels` (R,) index `classes`; `exclude` (Q, R) marks reference rows a query may not see
    (its own group in training). Columns: best similarity per class, mean of the k best
    unsafe, of the k best benign, their difference, the unsafe share of the NEAREST nearest.
    """
    sims = queries.float() @ reference.float().T  # (Q, R)
    if exclude is not None:
        sims = sims.masked_fill(exclude, -1.0)
    columns = []
    for i in range(len(classes)):
        mine = labels == i  # (R,)
        best = sims[:, mine].max(dim=1).values if bool(mine.any()) else None
        columns.append(best if best is not None else torch.full((len(sims),), -1.0))
    unsafe = labels != list(classes).index(benign)  # (R,)
    top_unsafe = sims.masked_fill(~unsafe, -1.0).topk(min(k, len(labels)), dim=1).values
    top_benign = sims.masked_fill(unsafe, -1.0).topk(min(k, len(labels)), dim=1).values
    nearest = sims.topk(min(NEAREST, len(labels)), dim=1).indices  # (Q, NEAREST)
    share = unsafe[nearest].float().mean(dim=1)
    u, b = top_unsafe.mean(dim=1), top_benign.mean(dim=1)
    return torch.stack([*columns, u, b, u - b, share], dim=1)  # (Q, C + 4)


@dataclass(frozen=True)
class NeighbourTable:
    """The tuning prompts' unit embeddings (R, D) and class indices (R,) into `classes`."""

    embeddings: torch.Tensor  # (R, D) float32, from float16
    labels: torch.Tensor  # (R,) long
    classes: tuple[str, ...]
    k: int = 3

    def features(self, queries: torch.Tensor) -> torch.Tensor:
        """(Q, len(classes) + 4) neighbour features of unit queries (Q, D)."""
        return neighbour_features(self.embeddings, self.labels, self.classes, queries, k=self.k)

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in the head file."""
        half = self.embeddings.to(torch.float16).numpy().astype("<f2")
        return {
            "format": NEIGHBOURS_FORMAT,
            "k": self.k,
            "classes": list(self.classes),
            "rows": int(half.shape[0]),
            "dim": int(half.shape[1]),
            "labels": [int(v) for v in self.labels],
            "embeddings_f16": base64.b64encode(half.tobytes()).decode("ascii"),
        }


def neighbours_from_json(data: Mapping[str, Any]) -> NeighbourTable:
    """The table from its JSON object (the head file's "neighbours" field), checked."""
    if data.get("format") != NEIGHBOURS_FORMAT:
        raise NeighbourError(
            f"format {data.get('format')!r} is not {NEIGHBOURS_FORMAT!r}; retrain it"
        )
    rows, dim, k = data.get("rows"), data.get("dim"), data.get("k")
    classes, labels = data.get("classes"), data.get("labels")
    if not all(isinstance(v, int) and v > 0 for v in (rows, dim, k)):
        raise NeighbourError(f"'rows', 'dim' and 'k' must be positive integers: {rows, dim, k}")
    if not isinstance(classes, list) or not isinstance(labels, list) or len(labels) != rows:
        raise NeighbourError(f"'classes' (a list) and 'labels' ({rows} class numbers) needed")
    if any(not isinstance(v, int) or not 0 <= v < len(classes) for v in labels):
        raise NeighbourError(f"a label is not a class number in 0..{len(classes) - 1}")
    try:
        raw = base64.b64decode(str(data.get("embeddings_f16", "")), validate=True)
    except ValueError as exc:
        raise NeighbourError("'embeddings_f16' is not base64") from exc
    assert isinstance(rows, int) and isinstance(dim, int) and isinstance(k, int)
    if len(raw) != rows * dim * 2:
        raise NeighbourError(f"'embeddings_f16' holds {len(raw)} bytes, not {rows}x{dim}x2")
    table = np.frombuffer(raw, dtype="<f2").reshape(rows, dim).astype(np.float32)
    return NeighbourTable(
        embeddings=torch.from_numpy(table),
        labels=torch.tensor(labels, dtype=torch.long),
        classes=tuple(str(c) for c in classes),
        k=k,
    )


def out_of_group_features(
    embeddings: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    groups: np.ndarray,
    reference: np.ndarray,
    queries: np.ndarray,
    k: int = 3,
) -> np.ndarray:
    """(Q, C + 4) features of rows `queries` against rows `reference` (indices into the (N, D)
    `embeddings`, (N,) class indices `labels` and (N,) group ids `groups`), never against a
    row of the query's own group: how training sees what a new prompt sees at check time."""
    exclude = groups[queries][:, None] == groups[reference][None, :]  # (Q, R)
    out = neighbour_features(
        torch.from_numpy(embeddings[reference]).float(),
        torch.from_numpy(labels[reference]).long(),
        classes,
        torch.from_numpy(embeddings[queries]).float(),
        k=k,
        exclude=torch.from_numpy(exclude),
    )
    return out.numpy()
