"""The neighbour block: similarities to the tuning prompts, never to a row's own group in
training, and a head that stores its tuning embeddings computes what scikit-learn trained."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.moderation.neighbours import (
    NeighbourTable,
    neighbour_features,
    neighbours_from_json,
    out_of_group_features,
)
from worker.moderation.semantic_head import (
    BENIGN,
    ClassifierHead,
    HeadError,
    feature_matrix,
    load_head,
    save_head,
)
from worker.moderation.train_head import _fit, _layers

CLASSES = (BENIGN, "sexual", "violence")


def _table(n: int = 60, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb, np.arange(n) % len(CLASSES)


def test_a_prompt_equal_to_a_tuning_prompt_scores_1_for_its_class_only_when_not_excluded() -> None:
    emb, labels = _table()
    ref, lab = torch.from_numpy(emb), torch.from_numpy(labels)
    feats = neighbour_features(ref, lab, CLASSES, ref[4:5])  # row 4 is "sexual"
    assert feats.shape == (1, len(CLASSES) + 4)
    assert float(feats[0, 1]) == pytest.approx(1.0, abs=1e-5)
    assert float(feats[0, 0]) < 0.99 and float(feats[0, 2]) < 0.99
    hidden = torch.zeros(1, len(emb), dtype=torch.bool)
    hidden[0, 4] = True
    assert float(neighbour_features(ref, lab, CLASSES, ref[4:5], exclude=hidden)[0, 1]) < 0.99


def test_training_features_never_see_the_rows_own_group() -> None:
    emb, labels = _table()
    emb[1] = emb[0]  # a variant of row 0, in its group
    groups = np.array([0, 0, *range(2, len(emb))])
    everyone = np.arange(len(emb))
    feats = out_of_group_features(emb, labels, CLASSES, groups, everyone, np.array([0]))
    assert feats[0, :3].max() < 0.99  # neither row 0 nor its twin
    apart = np.arange(1, len(emb))
    seen = out_of_group_features(emb, labels, CLASSES, np.arange(len(emb)), apart, np.array([0]))
    assert seen[0, labels[1]] == pytest.approx(1.0, abs=1e-5)  # another group's twin counts


def test_a_head_with_neighbours_computes_what_scikit_learn_trained(tmp_path: Path) -> None:
    emb, labels = _table()
    table = NeighbourTable(
        embeddings=torch.from_numpy(emb).to(torch.float16).float(),
        labels=torch.from_numpy(labels).long(), classes=CLASSES,
    )  # fmt: skip
    rng = np.random.default_rng(1)
    queries = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(90, 8))), dim=1)
    lexical = [{"sexual": float(i % 2), "violence": 0.0} for i in range(90)]
    blocks = ("embedding", "lexical", "neighbours")
    near = table.features(queries.float())
    x = feature_matrix(blocks, CLASSES[1:], queries, lexical, neighbours=near).numpy()
    y = np.array(list(CLASSES) * 30)
    fitted = _fit(x, y, argparse.Namespace(model="mlp", hidden=8, alpha=0.1))
    head = ClassifierHead(
        encoder="e", classes=tuple(str(c) for c in fitted.classes_), score_categories=CLASSES[1:],
        blocks=blocks, layers=_layers(fitted), thresholds={"sexual": 0.5, "violence": 0.5},
        neighbours=table,
    )  # fmt: skip
    save_head(head, tmp_path / "head.json")
    loaded = load_head(tmp_path / "head.json")
    assert loaded.version == head.version and loaded.neighbours is not None
    assert torch.equal(loaded.neighbours.embeddings, table.embeddings)
    for row, want in zip(
        loaded.probabilities(queries, lexical), fitted.predict_proba(x), strict=True
    ):
        got = [row.get(c, 1.0 - sum(row.values())) for c in fitted.classes_]
        assert got == pytest.approx(list(want), abs=1e-4)
    data = json.loads((tmp_path / "head.json").read_text(encoding="utf-8"))
    data.pop("neighbours")
    (tmp_path / "bad.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(HeadError, match="field 'neighbours' must be present"):
        load_head(tmp_path / "bad.json")


def test_a_bad_neighbour_table_is_refused_naming_the_field() -> None:
    emb, labels = _table(n=4)
    good = NeighbourTable(torch.from_numpy(emb), torch.from_numpy(labels), CLASSES).to_json()
    with pytest.raises(ValueError, match="'embeddings_f16' holds"):
        neighbours_from_json({**good, "rows": 5, "labels": [0] * 5})
    with pytest.raises(ValueError, match="a label is not a class number"):
        neighbours_from_json({**good, "labels": [0, 1, 2, 3]})
