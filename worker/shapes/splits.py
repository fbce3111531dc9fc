"""Held-out colour-shape pairs and two-object combinations, never drawn for training."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Split = Literal["train", "heldout"]
SPLITS: tuple[Split, ...] = ("train", "heldout")

# One pair per shape and no colour twice, so every colour and every shape is still seen in
# training; only these bindings are new at evaluation time.
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("red", "star"),
        ("blue", "triangle"),
        ("yellow", "circle"),
        ("purple", "cross"),
        ("orange", "square"),
    }
)

# Unordered two-object combinations of seen pairs, held out whatever their relation.
HELDOUT_COMBINATIONS: frozenset[frozenset[tuple[str, str]]] = frozenset(
    frozenset(combination)
    for combination in (
        (("orange", "circle"), ("blue", "cross")),
        (("green", "triangle"), ("yellow", "star")),
        (("white", "cross"), ("black", "circle")),
        (("purple", "star"), ("orange", "triangle")),
        (("blue", "circle"), ("red", "square")),
        (("black", "square"), ("white", "triangle")),
    )
)


def check_split(split: str) -> Split:
    """Return `split` if it names a split, else raise naming the allowed ones."""
    if split == "train":
        return "train"
    if split == "heldout":
        return "heldout"
    raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")


def is_heldout(pairs: Iterable[tuple[str, str]]) -> bool:
    """Whether a scene with these (colour, shape) objects belongs to the held-out split."""
    pairs = list(pairs)
    if any(pair in HELDOUT_PAIRS for pair in pairs):
        return True
    return len(pairs) == 2 and frozenset(pairs) in HELDOUT_COMBINATIONS
