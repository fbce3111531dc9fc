"""The semantic stage's spelling-robust half: hashed character n-grams, logistic regression.

MiniLM's word pieces break on misspellings ("posion", "sucide"), run-together words and
loanwords; character n-grams of the normalised prompt still share most of their pieces with the
spelled word. The model is one logistic regression, unsafe against benign, over hashed n-grams
(characters 3-5 inside word boundaries, and words 1-2), trained on the tuning set by
`unclip moderation-head` beside the head and stored in the head's JSON file (only the buckets
with a weight). The network's unsafe probability and this model's are averaged; the network
names the category (worker/moderation/semantic_head.py, `ClassifierHead.flagged`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NGRAM_FORMAT = "unclip-moderation-ngram/1"
CHAR_RANGE = (3, 5)
WORD_RANGE = (1, 2)


class NgramError(ValueError):
    """An n-gram model that cannot be used; the message names the field."""


def ngrams(text: str) -> Iterable[str]:
    """The pieces of an already normalised prompt (lowercase words split by single spaces)."""
    words = text.split()
    for n in range(WORD_RANGE[0], WORD_RANGE[1] + 1):
        for i in range(len(words) - n + 1):
            yield "w:" + " ".join(words[i : i + n])
    for word in words:
        padded = f" {word} "
        for n in range(CHAR_RANGE[0], CHAR_RANGE[1] + 1):
            for i in range(len(padded) - n + 1):
                yield "c:" + padded[i : i + n]


def hashed(text: str, bits: int) -> dict[int, float]:
    """Bucket -> value: presence of each piece, L2-normalised (the same at training and check)."""
    mask = (1 << bits) - 1
    buckets = {zlib.crc32(piece.encode()) & mask for piece in ngrams(text)}
    if not buckets:
        return {}
    value = 1.0 / math.sqrt(len(buckets))
    return dict.fromkeys(buckets, value)


@dataclass(frozen=True)
class NgramModel:
    """P(unsafe) = sigmoid(bias + sum of the prompt's bucket weights * values)."""

    bits: int
    weights: Mapping[int, float]
    bias: float
    trained_on: Mapping[str, Any] = field(default_factory=dict)

    def probability(self, text: str) -> float:
        """P(unsafe) of one normalised prompt."""
        z = self.bias + sum(
            self.weights.get(b, 0.0) * v for b, v in hashed(text, self.bits).items()
        )
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def probabilities(self, texts: Sequence[str]) -> list[float]:
        """`probability` of each prompt."""
        return [self.probability(t) for t in texts]

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored in the head file (buckets as strings, sorted)."""
        return {
            "format": NGRAM_FORMAT,
            "bits": self.bits,
            "char_range": list(CHAR_RANGE),
            "word_range": list(WORD_RANGE),
            "bias": round(float(self.bias), 6),
            "trained_on": dict(self.trained_on),
            "weights": {str(k): round(float(v), 5) for k, v in sorted(self.weights.items())},
        }


def ngram_from_json(data: Mapping[str, Any]) -> NgramModel:
    """The model from its JSON object (the head file's "ngram" field), checked."""
    if data.get("format") != NGRAM_FORMAT:
        raise NgramError(f"format {data.get('format')!r} is not {NGRAM_FORMAT!r}; retrain it")
    if data.get("char_range") != list(CHAR_RANGE) or data.get("word_range") != list(WORD_RANGE):
        raise NgramError(
            f"n-gram ranges {data.get('char_range')} / {data.get('word_range')} are not this "
            f"code's {list(CHAR_RANGE)} / {list(WORD_RANGE)}; retrain it"
        )
    bits, weights, bias = data.get("bits"), data.get("weights"), data.get("bias")
    if not isinstance(bits, int) or not 8 <= bits <= 24:
        raise NgramError(f"'bits' must be an integer in 8..24, got {bits!r}")
    if not isinstance(weights, dict) or not isinstance(bias, int | float):
        raise NgramError("'weights' (an object) and 'bias' (a number) are required")
    try:
        table = {int(k): float(v) for k, v in weights.items()}
    except (TypeError, ValueError) as exc:
        raise NgramError("'weights' must map bucket numbers to numbers") from exc
    if any(not 0 <= k < (1 << bits) for k in table):
        raise NgramError(f"a bucket in 'weights' is outside 0..2**{bits}-1")
    return NgramModel(
        bits=bits, weights=table, bias=float(bias), trained_on=dict(data.get("trained_on") or {})
    )
