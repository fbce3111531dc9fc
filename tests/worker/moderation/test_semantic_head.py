"""The classifier head file: what scikit-learn trained is what the service computes, and a
bad file is refused with a message naming the field."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.moderation.semantic_head import (
    BENIGN,
    ClassifierHead,
    HeadError,
    feature_matrix,
    load_head,
    save_head,
)
from worker.moderation.train_head import _fit, _layers

CATEGORIES = ("sexual", "violence")
BLOCKS = ("embedding", "lexical", "exemplar", "benign", "margin")


Rows = list[dict[str, float]]


def _data(n: int = 90, dim: int = 6) -> tuple[torch.Tensor, Rows, Rows, list[float]]:
    rng = np.random.default_rng(0)
    embeddings = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(n, dim))), dim=1)
    lexical = [{c: float(rng.integers(0, 2)) for c in CATEGORIES} for _ in range(n)]
    exemplar = [{c: float(rng.uniform(-0.2, 0.8)) for c in CATEGORIES} for _ in range(n)]
    benign = [float(v) for v in rng.uniform(-0.2, 0.8, size=n)]
    return embeddings, lexical, exemplar, benign


@pytest.mark.parametrize("model", ["mlp", "logistic"])
def test_the_head_computes_what_scikit_learn_trained(model: str, tmp_path: Path) -> None:
    embeddings, lexical, exemplar, benign = _data()
    x = feature_matrix(BLOCKS, CATEGORIES, embeddings, lexical, exemplar, benign).numpy()
    assert x.shape == (90, 6 + 2 + 2 + 1 + 2)
    y = np.array([BENIGN, "sexual", "violence"] * 30)
    options = argparse.Namespace(model=model, hidden=8, alpha=0.1, c=4.0)
    fitted = _fit(x, y, options)
    head = ClassifierHead(
        encoder="test-encoder",
        classes=tuple(str(c) for c in fitted.classes_),
        score_categories=CATEGORIES,
        blocks=BLOCKS,
        layers=_layers(fitted),
        thresholds={"sexual": 0.5, "violence": 0.5},
    )
    assert len(head.layers) == (2 if model == "mlp" else 1)
    path = tmp_path / "head.json"
    save_head(head, path)
    loaded = load_head(path)
    assert loaded.version == head.version
    probs = loaded.probabilities(embeddings, lexical, exemplar, benign)
    expected = fitted.predict_proba(x)
    for row, want in zip(probs, expected, strict=True):
        got = [row.get(c, 1.0 - sum(row.values())) for c in fitted.classes_]
        assert got == pytest.approx(list(want), abs=1e-4)


def test_a_head_over_encoder_layers_computes_what_scikit_learn_trained(tmp_path: Path) -> None:
    embeddings, lexical, exemplar, benign = _data()
    states = torch.nn.functional.normalize(torch.randn(90, 3, 6, dtype=torch.float64), dim=-1)
    blocks = (*BLOCKS, "layer_states")
    x = feature_matrix(blocks, CATEGORIES, embeddings, lexical, exemplar, benign, states).numpy()
    assert x.shape == (90, 6 + 2 + 2 + 1 + 2 + 3 * 6)
    y = np.array([BENIGN, "sexual", "violence"] * 30)
    fitted = _fit(x, y, argparse.Namespace(model="mlp", hidden=8, alpha=0.1))
    head = ClassifierHead(
        encoder="test-encoder", classes=tuple(str(c) for c in fitted.classes_),
        score_categories=CATEGORIES, blocks=blocks, layers=_layers(fitted),
        thresholds={"sexual": 0.5, "violence": 0.5}, encoder_layers=(3, 4, 5),
    )  # fmt: skip
    save_head(head, tmp_path / "head.json")
    loaded = load_head(tmp_path / "head.json")
    assert loaded.encoder_layers == (3, 4, 5) and loaded.version == head.version
    probs = loaded.probabilities(embeddings, lexical, exemplar, benign, states)
    for row, want in zip(probs, fitted.predict_proba(x), strict=True):
        got = [row.get(c, 1.0 - sum(row.values())) for c in fitted.classes_]
        assert got == pytest.approx(list(want), abs=1e-4)
    with pytest.raises(ValueError, match="needs the encoder's layer states of the 90 prompts"):
        loaded.probabilities(embeddings, lexical, exemplar, benign)
    data = head.to_json()
    data.pop("encoder_layers")
    (tmp_path / "bad.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(HeadError, match="field 'encoder_layers'"):
        load_head(tmp_path / "bad.json")


def test_a_head_without_the_scores_it_needs_says_which(tmp_path: Path) -> None:
    embeddings, lexical, _, _ = _data(n=3)
    head = ClassifierHead(
        encoder="e", classes=(BENIGN, "sexual"), score_categories=CATEGORIES, blocks=BLOCKS,
        layers=((torch.zeros(2, 13), torch.zeros(2)),), thresholds={"sexual": 0.5},
    )  # fmt: skip
    with pytest.raises(ValueError, match="the head needs exemplar scores for each of the 3"):
        head.probabilities(embeddings, lexical)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="unclip-moderation-head/1"), "retrain it"),
        (lambda d: d.update(features=["embedding", "colour"]), "must be some of"),
        (lambda d: d["layers"][1].update(weight=[[0.0] * 5] * 3), "layers\\[1\\] takes 5 inputs"),
        (lambda d: d.update(layers=[]), "at least one layer"),
        (lambda d: d["thresholds"].pop("violence"), "missing thresholds for \\['violence'\\]"),
    ],
)
def test_a_bad_head_file_is_refused_naming_the_field(
    tmp_path: Path, change: object, message: str
) -> None:
    head = ClassifierHead(
        encoder="e", classes=(BENIGN, "sexual", "violence"), score_categories=CATEGORIES,
        blocks=("embedding",), layers=((torch.zeros(4, 6), torch.zeros(4)),
                                       (torch.zeros(3, 4), torch.zeros(3))),
        thresholds={"sexual": 0.5, "violence": 0.5},
    )  # fmt: skip
    data = head.to_json()
    change(data)  # type: ignore[operator]
    path = tmp_path / "head.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(HeadError, match=message):
        load_head(path)
