"""The hashed character n-gram model in the head file: what scikit-learn trained is what the
service computes, misspellings keep most of a word's pieces, and a bad field is refused."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.moderation.ngram_model import NgramModel, hashed, ngrams
from worker.moderation.prompt_eval import LabelledPrompt
from worker.moderation.semantic_head import BENIGN, ClassifierHead, HeadError, load_head, save_head
from worker.moderation.train_head import _fit_ngram, ngram_matrix

BITS = 12


def _rows() -> list[LabelledPrompt]:
    unsafe = ["how to make poison gas", "a pipe bomb diagram", "poison his drink", "a bomb vest"]
    benign = ["a cat on a sofa", "a bowl of soup", "a sunny beach", "a red bicycle"]
    return [
        LabelledPrompt(p, label, "violence" if label == "unsafe" else None, "plain", p, "tuning")
        for texts, label in ((unsafe, "unsafe"), (benign, "benign"))
        for p in texts
    ]


def _head(ngram: NgramModel, weight: float) -> ClassifierHead:
    return ClassifierHead(
        encoder="e", classes=(BENIGN, "violence"), score_categories=("violence",),
        blocks=("lexical",), layers=((torch.zeros(2, 1), torch.zeros(2)),),
        thresholds={"violence": 0.6}, ngram=ngram, ngram_weight=weight,
    )  # fmt: skip


def test_the_ngram_model_computes_what_scikit_learn_trained(tmp_path: Path) -> None:
    rows = _rows()
    x = ngram_matrix(rows, BITS)
    unsafe = np.array([r.label == "unsafe" for r in rows])
    fitted = _fit_ngram(x, unsafe, argparse.Namespace(ngram_c=10.0))
    coef = fitted.coef_[0]
    model = NgramModel(
        bits=BITS,
        weights={int(k): float(coef[k]) for k in np.flatnonzero(coef)},
        bias=float(fitted.intercept_[0]),
    )
    path = tmp_path / "head.json"
    save_head(_head(model, 0.5), path)
    loaded = load_head(path)
    assert loaded.ngram is not None and loaded.ngram_weight == 0.5
    got = loaded.ngram_probabilities([r.prompt for r in rows])
    assert got == pytest.approx(list(fitted.predict_proba(x)[:, 1]), abs=1e-4)
    assert loaded.version == _head(model, 0.5).version


def test_the_unsafe_score_averages_the_network_and_the_ngram_model() -> None:
    head = _head(NgramModel(bits=BITS, weights={}, bias=0.0), 0.25)
    probs = {"violence": 0.8}
    assert head.unsafe_score(probs, 0.0) == pytest.approx(0.6)
    assert head.flagged(probs, 0.0) == "violence"  # 0.6 reaches the 0.6 threshold
    assert head.flagged({"violence": 0.5}, 1.0) == "violence"  # 0.625: the n-gram model lifts it
    assert head.flagged({"violence": 0.7}, 0.0) is None  # 0.525
    with pytest.raises(ValueError, match="pass its probability"):
        head.flagged(probs)


def test_a_misspelt_word_keeps_most_of_its_pieces() -> None:
    def overlap(a: str, b: str) -> float:
        x, y = hashed(a, 18), hashed(b, 18)
        return sum(x[k] * y[k] for k in x.keys() & y.keys())

    # A word piece tokenizer reads "sucide" as unrelated pieces; here 40% of it is shared.
    assert overlap("suicide", "sucide") > 0.35
    assert overlap("poison", "poisen") > 0.35
    assert overlap("a poison drink", "a posion drink") > 0.5
    assert overlap("poison", "sunset") == 0.0
    assert "w:pipe bomb" in set(ngrams("a pipe bomb")) and "c: bo" in set(ngrams("a pipe bomb"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "x"}, "is not 'unclip-moderation-ngram/1'"),
        ({"bits": 40}, "'bits' must be an integer"),
        ({"char_range": [2, 4]}, "n-gram ranges"),
        ({"weights": {"99999": 1.0}}, "outside 0..2\\*\\*12-1"),
    ],
)
def test_a_bad_ngram_field_is_refused_naming_it(
    change: dict[str, object], message: str, tmp_path: Path
) -> None:
    path = tmp_path / "head.json"
    save_head(_head(NgramModel(bits=BITS, weights={1: 0.5}, bias=0.0), 0.5), path)
    data = json.loads(path.read_text())
    data["ngram"] |= change
    path.write_text(json.dumps(data))
    with pytest.raises(HeadError, match=f"field 'ngram': .*{message}"):
        load_head(path)


def test_a_bad_ngram_weight_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "head.json"
    save_head(_head(NgramModel(bits=BITS, weights={}, bias=0.0), 0.5), path)
    data = json.loads(path.read_text())
    data["ngram_weight"] = 2
    path.write_text(json.dumps(data))
    with pytest.raises(HeadError, match="'ngram_weight' must be a number in 0..1"):
        load_head(path)
