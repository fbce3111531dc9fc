"""The semantic stage's classifier head: a small network over sentence embeddings and scores.

A small JSON file (no pickle: it is data, read with json) written by
`unclip moderation-head` (worker/moderation/train_head.py) from the tuning set. It holds the
layers (one layer: logistic regression; more: an MLP with ReLU between), optionally a hashed
character n-gram model (worker/moderation/ngram_model.py) whose unsafe probability is averaged
with the network's, the per-category thresholds chosen on the tuning set, and what it was
trained on, so a verdict can name the head that made it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from worker.moderation.neighbours import NeighbourError, NeighbourTable, neighbours_from_json
from worker.moderation.ngram_model import NgramError, NgramModel, ngram_from_json

HEAD_FORMAT = "unclip-moderation-head/2"
BENIGN = "benign"
# The blocks a head's features may be built from, in this order:
#   embedding: the encoder's unit embedding of the normalised prompt (D values);
#   lexical:   the lexical stage's score for each of `score_categories` (1 = a term, 0.5 = half
#              a combo);
#   exemplar:  the best exemplar similarity for each of `score_categories`;
#   benign:    the best benign-exemplar similarity (one value);
#   margin:    exemplar minus benign, per category;
#   layer_states: the encoder's unit mean-pooled hidden states after each of `encoder_layers`
#              (L x D values; the middle layers keep word-level cues the last one smooths out);
#   neighbours: similarities to the nearest tuning prompts of each class, stored in the head
#              (worker/moderation/neighbours.py; C + 4 values).
FEATURE_BLOCKS = (
    "embedding", "lexical", "exemplar", "benign", "margin", "layer_states", "neighbours"
)  # fmt: skip


class HeadError(ValueError):
    """A head file that cannot be used; the message names the file and the field."""


Scores = Sequence[Mapping[str, float]]


def feature_matrix(
    blocks: Sequence[str],
    categories: Sequence[str],
    embeddings: torch.Tensor,
    lexical: Scores,
    exemplar: Scores | None = None,
    benign: Sequence[float] | None = None,
    layer_states: torch.Tensor | None = None,
    neighbours: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N, F) features in `blocks` order: what the head sees at check time and in training
    (`layer_states`: (N, L, D), the encoder's pooled intermediate layers; `neighbours`:
    (N, C + 4), the neighbour features)."""
    n = len(lexical)

    def table(rows: Scores | None, name: str) -> torch.Tensor:
        if rows is None or len(rows) != n:
            raise ValueError(f"the head needs {name} scores for each of the {n} prompts")
        return torch.tensor(
            [[float(r.get(c, 0.0)) for c in categories] for r in rows], dtype=torch.float32
        ).reshape(n, len(categories))

    parts: list[torch.Tensor] = []
    for block in blocks:
        if block == "embedding":
            parts.append(embeddings.float().reshape(n, -1))
        elif block == "lexical":
            parts.append(table(lexical, "lexical"))
        elif block == "exemplar":
            parts.append(table(exemplar, "exemplar"))
        elif block in ("benign", "margin"):
            if benign is None or len(benign) != n:
                raise ValueError(f"the head needs a benign score for each of the {n} prompts")
            low = torch.tensor(list(benign), dtype=torch.float32).reshape(n, 1)
            parts.append(low if block == "benign" else table(exemplar, "exemplar") - low)
        elif block == "layer_states":
            if layer_states is None or len(layer_states) != n:
                raise ValueError(f"the head needs the encoder's layer states of the {n} prompts")
            parts.append(layer_states.float().reshape(n, -1))
        elif block == "neighbours":
            if neighbours is None or len(neighbours) != n:
                raise ValueError(f"the head needs the neighbour features of the {n} prompts")
            parts.append(neighbours.float().reshape(n, -1))
        else:
            raise ValueError(f"feature block {block!r} is not one of {FEATURE_BLOCKS}")
    return torch.cat(parts, dim=1)


@dataclass(frozen=True)
class ClassifierHead:
    """Softmax over "benign" and the policy's categories, from `layers` applied in turn.

    One layer is multinomial logistic regression; with more, a ReLU sits between layers. The
    lexical scores among the features let the head learn in which contexts a matched word
    means harm; the exemplar similarities carry the policy's own examples.
    """

    encoder: str
    classes: tuple[str, ...]
    score_categories: tuple[str, ...]
    blocks: tuple[str, ...]
    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # (out, in) weight, (out,) bias
    thresholds: Mapping[str, float]  # category -> unsafe score at which it fires
    trained_on: Mapping[str, Any] = field(default_factory=dict)
    # The n-gram model and its share of the unsafe score (0: the network alone decides).
    ngram: NgramModel | None = None
    ngram_weight: float = 0.0
    # The encoder layers whose pooled states the "layer_states" block holds, in order.
    encoder_layers: tuple[int, ...] = ()
    # The tuning prompts the "neighbours" block measures a prompt against.
    neighbours: NeighbourTable | None = None

    @cached_property
    def version(self) -> str:
        """A short name for verdict rows: a hash of the file's model (as saved, so a head and
        its saved copy share the name), features and thresholds."""
        data = self.to_json()
        data.pop("trained_on")
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode())
        return f"head:{digest.hexdigest()[:12]}"

    def features(
        self,
        embeddings: torch.Tensor,
        lexical: Scores,
        exemplar: Scores | None = None,
        benign: Sequence[float] | None = None,
        layer_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(N, F) features in this head's block order."""
        near = self.neighbours.features(embeddings) if self.neighbours is not None else None
        return feature_matrix(
            self.blocks, self.score_categories, embeddings, lexical, exemplar, benign,
            layer_states, near,
        )  # fmt: skip

    def probabilities(
        self,
        embeddings: torch.Tensor,
        lexical: Scores,
        exemplar: Scores | None = None,
        benign: Sequence[float] | None = None,
        layer_states: torch.Tensor | None = None,
    ) -> list[dict[str, float]]:
        """Per row, the probability of each category (benign left out)."""
        hidden = self.features(embeddings, lexical, exemplar, benign, layer_states)
        for i, (weight, bias) in enumerate(self.layers):
            hidden = hidden @ weight.T + bias
            if i < len(self.layers) - 1:
                hidden = torch.relu(hidden)
        probs = torch.softmax(hidden, dim=1)
        return [
            {c: float(p) for c, p in zip(self.classes, row, strict=True) if c != BENIGN}
            for row in probs
        ]

    def ngram_probabilities(self, texts: Sequence[str]) -> list[float] | None:
        """The n-gram model's P(unsafe) of each normalised prompt, or None without one."""
        return self.ngram.probabilities(texts) if self.ngram is not None else None

    def unsafe_score(
        self, probabilities: Mapping[str, float], ngram_probability: float | None = None
    ) -> float:
        """The network's total unsafe probability (1 - P(benign)), averaged with the n-gram
        model's P(unsafe) at `ngram_weight` when the head has one."""
        mass = sum(probabilities.values())
        if self.ngram is None or ngram_probability is None:
            return mass
        return (1.0 - self.ngram_weight) * mass + self.ngram_weight * ngram_probability

    def flagged(
        self, probabilities: Mapping[str, float], ngram_probability: float | None = None
    ) -> str | None:
        """The category a row is flagged for, or None.

        The network's most likely unsafe category fires when the unsafe score reaches that
        category's threshold: a prompt torn between two harms still counts.
        """
        if not probabilities:
            return None
        if self.ngram is not None and ngram_probability is None:
            raise ValueError("this head has an n-gram model: pass its probability")
        top = max(probabilities, key=probabilities.__getitem__)
        score = self.unsafe_score(probabilities, ngram_probability)
        return top if score >= self.thresholds.get(top, 1.1) else None

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        extra: dict[str, Any] = {}
        if self.encoder_layers:
            extra["encoder_layers"] = list(self.encoder_layers)
        if self.neighbours is not None:
            extra["neighbours"] = self.neighbours.to_json()
        if self.ngram is not None:
            extra |= {"ngram_weight": round(float(self.ngram_weight), 4),
                      "ngram": self.ngram.to_json()}  # fmt: skip
        return {
            "format": HEAD_FORMAT,
            "encoder": self.encoder,
            "classes": list(self.classes),
            "score_categories": list(self.score_categories),
            "features": list(self.blocks),
            "thresholds": {k: round(float(v), 4) for k, v in self.thresholds.items()},
            "trained_on": dict(self.trained_on),
            "layers": [
                {
                    "bias": [round(float(b), 6) for b in bias],
                    "weight": [[round(float(w), 6) for w in row] for row in weight],
                }
                for weight, bias in self.layers
            ],
            **extra,
        }


def save_head(head: ClassifierHead, path: str | Path) -> None:
    """Write the head as JSON (one line per weight row keeps diffs readable)."""
    data = head.to_json()
    layers = data.pop("layers")
    ngram = data.pop("ngram", None)
    near = data.pop("neighbours", None)
    text = json.dumps(data, indent=1)[:-2]
    blocks = []
    for layer in layers:
        rows = ",\n    ".join(json.dumps(row) for row in layer["weight"])
        blocks.append(
            f'  {{"bias": {json.dumps(layer["bias"])},\n   "weight": [\n    {rows}\n   ]}}'
        )
    body = ",\n".join(blocks)
    tail = ""
    if ngram is not None:  # its weights on one line: thousands of buckets
        weights = json.dumps(ngram.pop("weights"), separators=(",", ":"))
        tail = f',\n "ngram": {json.dumps(ngram)[:-1]}, "weights": {weights}}}'
    if near is not None:  # one line: its embeddings are one base64 string
        tail += f',\n "neighbours": {json.dumps(near)}'
    Path(path).write_text(f'{text},\n "layers": [\n{body}\n ]{tail}\n}}\n', encoding="utf-8")


def _field(data: Mapping[str, Any], key: str, kind: type, path: Path) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise HeadError(f"{path}: field {key!r} must be a {kind.__name__}, got {value!r:.60}")
    return value


def _layers(data: Mapping[str, Any], path: Path) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    layers: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i, layer in enumerate(_field(data, "layers", list, path)):
        if not isinstance(layer, dict):
            raise HeadError(f"{path}: layers[{i}] must be an object with weight and bias")
        weight = torch.tensor(_field(layer, "weight", list, path), dtype=torch.float32)
        bias = torch.tensor(_field(layer, "bias", list, path), dtype=torch.float32)
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise HeadError(
                f"{path}: layers[{i}] weight {tuple(weight.shape)} / bias "
                f"{tuple(bias.shape)} do not fit together"
            )
        if layers and layers[-1][0].shape[0] != weight.shape[1]:
            raise HeadError(
                f"{path}: layers[{i}] takes {weight.shape[1]} inputs, the layer before "
                f"gives {layers[-1][0].shape[0]}"
            )
        layers.append((weight, bias))
    if not layers:
        raise HeadError(f"{path}: field 'layers' must hold at least one layer")
    return tuple(layers)


def load_head(path: str | Path) -> ClassifierHead:
    """Read and check a head file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HeadError(
            f"{path}: cannot read the classifier head ({exc.strerror}); train it "
            "with `unclip moderation-head`"
        ) from exc
    except json.JSONDecodeError as exc:
        raise HeadError(f"{path}: not valid JSON: {exc}") from exc
    if data.get("format") != HEAD_FORMAT:
        raise HeadError(
            f"{path}: format {data.get('format')!r} is not {HEAD_FORMAT!r}; retrain it "
            "with `unclip moderation-head`"
        )
    classes = tuple(_field(data, "classes", list, path))
    categories = tuple(_field(data, "score_categories", list, path))
    blocks = tuple(_field(data, "features", list, path))
    unknown = [b for b in blocks if b not in FEATURE_BLOCKS]
    if unknown or not blocks:
        raise HeadError(f"{path}: features {list(blocks)} must be some of {FEATURE_BLOCKS}")
    layers = _layers(data, path)
    encoder_layers = tuple(data.get("encoder_layers") or ())
    if ("layer_states" in blocks) != bool(encoder_layers) or not all(
        isinstance(i, int) and 0 <= i <= 64 for i in encoder_layers
    ):
        raise HeadError(
            f"{path}: field 'encoder_layers' ({list(encoder_layers)}) must list the layers "
            "(integers) exactly when the features hold 'layer_states'"
        )
    if layers[-1][0].shape[0] != len(classes):
        raise HeadError(
            f"{path}: the last layer gives {layers[-1][0].shape[0]} outputs for "
            f"{len(classes)} classes"
        )
    thresholds = {str(k): float(v) for k, v in _field(data, "thresholds", dict, path).items()}
    missing = [c for c in classes if c != BENIGN and c not in thresholds]
    if BENIGN not in classes or missing:
        raise HeadError(
            f"{path}: classes need {BENIGN!r} and a threshold each; missing "
            f"thresholds for {missing}"
        )
    ngram, weight = None, 0.0
    if "ngram" in data:
        try:
            ngram = ngram_from_json(_field(data, "ngram", dict, path))
        except NgramError as exc:
            raise HeadError(f"{path}: field 'ngram': {exc}") from exc
        weight = data.get("ngram_weight")
        if not isinstance(weight, int | float) or not 0.0 <= weight <= 1.0:
            raise HeadError(f"{path}: field 'ngram_weight' must be a number in 0..1")
    near = None
    if ("neighbours" in blocks) != ("neighbours" in data):
        raise HeadError(
            f"{path}: field 'neighbours' must be present exactly when the features hold it"
        )
    if "neighbours" in data:
        try:
            near = neighbours_from_json(_field(data, "neighbours", dict, path))
        except NeighbourError as exc:
            raise HeadError(f"{path}: field 'neighbours': {exc}") from exc
    return ClassifierHead(
        encoder=str(_field(data, "encoder", str, path)), classes=classes,
        score_categories=categories, blocks=blocks, layers=layers, thresholds=thresholds,
        trained_on=dict(data.get("trained_on") or {}), ngram=ngram, ngram_weight=float(weight),
        encoder_layers=encoder_layers, neighbours=near,
    )  # fmt: skip
