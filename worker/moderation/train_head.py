"""`unclip moderation-head`: train the semantic stage's classifier head on the tuning set only.

    unclip moderation-head [--policy policies/default.yaml]
        [--tuning tests/fixtures/moderation/tuning.jsonl] [--out policies/default.head.json]
        [--model mlp|logistic] [--hidden 64] [--alpha 0.1] [--C 64] [--fp-budget 0.01]

Features: MiniLM embeddings of the normalised prompt, the lexical stage's per-category scores,
and the policy's exemplar similarities (best per category, best benign, and their margin).
The model is a one-hidden-layer MLP (scikit-learn, the default) or a logistic regression.
The per-category probability thresholds are chosen on out-of-fold predictions (grouped
k-fold, so variants of one prompt never sit on both sides), as the most unsafe prompts caught
with at most `--fp-budget` of benign ones flagged. Also reported: leave-one-source-out
figures (each source of the tuning set predicted by a model trained on the others, with the
chosen thresholds), the closest the tuning set gets to a held-out set written apart. The test
set is never read here.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.moderation.gate import PROJECT_ROOT
from shared.moderation.lexical import LexicalChecker
from shared.moderation.policy import Policy, load_policy
from worker.moderation.prompt_eval import LabelledPrompt, load_labelled
from worker.moderation.semantic import SemanticChecker
from worker.moderation.semantic_head import BENIGN, ClassifierHead, feature_matrix, save_head
from worker.moderation.text_encoders import MiniLMEncoder, TextEncoder

DEFAULT_TUNING = PROJECT_ROOT / "tests" / "fixtures" / "moderation" / "tuning.jsonl"
# Candidate thresholds: finer near 1, where a confident head's benign look-alikes sit.
GRID = np.unique(
    np.round(np.concatenate([np.arange(0.05, 0.96, 0.01), np.arange(0.96, 0.999, 0.002)]), 3)
)
BLOCKS = ("embedding", "lexical", "exemplar", "benign", "margin")


def design_matrix(
    policy: Policy, rows: Sequence[LabelledPrompt], encoder: TextEncoder
) -> np.ndarray:
    """(N, F) features of the prompts, built as the semantic checker builds them at check time."""
    checker = SemanticChecker(policy, encoder, head=None)
    lexical = LexicalChecker(policy)
    prompts = [r.prompt for r in rows]
    scored = []
    for start in range(0, len(prompts), 64):
        scored += checker._score_rows(  # the checker's own features
            prompts[start : start + 64]
        )
    x = feature_matrix(
        BLOCKS,
        list(policy.categories),
        torch.stack([row[2] for row in scored]),
        [lexical.check(p).scores for p in prompts],
        [row[0] for row in scored],
        [row[1] for row in scored],
    )
    return x.numpy()


def _fit(x: np.ndarray, y: np.ndarray, options: argparse.Namespace) -> Any:
    if options.model == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=options.c, max_iter=3000, class_weight="balanced").fit(x, y)
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=(options.hidden,), alpha=options.alpha, max_iter=600, random_state=0
    ).fit(x, y)


def out_of_fold(
    x: np.ndarray,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    options: argparse.Namespace,
) -> np.ndarray:
    """(N, C) probabilities, each row predicted by a model that never saw its fold."""
    classes = list(np.unique(y))
    probs = np.zeros((len(y), len(classes)))
    for train, held in splits:
        model = _fit(x[train], y[train], options)
        columns = [classes.index(k) for k in model.classes_]
        probs[np.ix_(held, np.array(columns))] = model.predict_proba(x[held])
    return probs


def grouped_folds(
    x: np.ndarray, y: np.ndarray, groups: Sequence[str], folds: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold that keeps each group (variants of one prompt) on one side."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(x, y, groups))


def source_folds(rows: Sequence[LabelledPrompt]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """One fold per source; sources that share a group are held out together."""
    sources = np.array([r.source for r in rows])
    parent = {str(s): str(s) for s in sources}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    linked: dict[str, set[str]] = {}
    for r in rows:
        linked.setdefault(r.group, set()).add(r.source)
    for names in linked.values():
        roots = sorted({root(s) for s in names})
        for other in roots[1:]:
            parent[other] = roots[0]
    folds = []
    for name in sorted({root(s) for s in parent}):
        held = np.array([root(str(s)) == name for s in sources])
        folds.append((name, np.where(~held)[0], np.where(held)[0]))
    return folds


def _flags(probs: np.ndarray, classes: Sequence[str], thresholds: dict[str, float]) -> np.ndarray:
    """What ClassifierHead.flagged decides, for many rows at once."""
    benign = list(classes).index(BENIGN)
    unsafe_mass = 1.0 - probs[:, benign]
    masked = probs.copy()
    masked[:, benign] = -1.0
    top = np.array(classes)[masked.argmax(axis=1)]
    limits = np.array([thresholds.get(str(t), 1.1) for t in top])
    return np.asarray(unsafe_mass >= limits)


def choose_thresholds(
    probs: np.ndarray, classes: Sequence[str], unsafe: np.ndarray, fp_budget: float, passes: int = 3
) -> dict[str, float]:
    """Per-category thresholds: most unsafe rows flagged with benign flagged <= fp_budget.

    Starts from the lowest common threshold within the budget, then moves each category's
    own threshold while the budget holds (so the result is never worse than the common one).
    """
    cats = [str(c) for c in classes if c != BENIGN]
    limit = int(np.floor(fp_budget * (~unsafe).sum()))

    def score(th: dict[str, float]) -> tuple[int, int]:
        hits = _flags(probs, classes, th)
        return int((hits & unsafe).sum()), int((hits & ~unsafe).sum())

    common = next(
        (float(t) for t in GRID if score(dict.fromkeys(cats, float(t)))[1] <= limit),
        float(GRID[-1]),
    )
    chosen = dict.fromkeys(cats, common)
    for _ in range(passes):
        for cat in cats:
            best = (*score(chosen), chosen[cat])
            best = (best[0], -best[1], best[2])
            for t in GRID:
                caught, fps = score({**chosen, cat: float(t)})
                if fps <= limit and (caught, -fps, float(t)) > best:
                    best = (caught, -fps, float(t))
            chosen[cat] = best[2]
    return chosen


def _rates(hits: np.ndarray, unsafe: np.ndarray) -> dict[str, float]:
    return {
        "recall": float((hits & unsafe).sum() / max(1, unsafe.sum())),
        "false_positive_rate": float((hits & ~unsafe).sum() / max(1, (~unsafe).sum())),
    }


def _layers(model: Any) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """The fitted model as (weight (out, in), bias) layers for ClassifierHead."""
    if hasattr(model, "coefs_"):  # MLPClassifier: coefs_ are (in, out)
        pairs = zip(model.coefs_, model.intercepts_, strict=True)
        return tuple(
            (torch.tensor(w.T, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
            for w, b in pairs
        )
    return ((torch.tensor(model.coef_, dtype=torch.float32),
             torch.tensor(model.intercept_, dtype=torch.float32)),)  # fmt: skip


def train_head(
    policy: Policy,
    rows: Sequence[LabelledPrompt],
    encoder: TextEncoder,
    options: argparse.Namespace,
    *,
    source: str,
) -> tuple[ClassifierHead, dict[str, Any]]:
    """Fit the head on all rows; thresholds from out-of-fold predictions. Returns head, report."""
    x = design_matrix(policy, rows, encoder)
    y = np.array([r.category if r.label == "unsafe" and r.category else BENIGN for r in rows])
    unsafe = np.array([r.label == "unsafe" for r in rows])
    classes = [str(c) for c in np.unique(y)]
    probs = out_of_fold(x, y, grouped_folds(x, y, [r.group for r in rows]), options)
    thresholds = choose_thresholds(probs, classes, unsafe, options.fp_budget)
    report: dict[str, Any] = {"grouped_5_fold": _rates(_flags(probs, classes, thresholds), unsafe)}
    by_source = source_folds(rows)
    if len(by_source) > 1:
        held_probs = out_of_fold(x, y, [(tr, te) for _, tr, te in by_source], options)
        hits = _flags(held_probs, classes, thresholds)
        report["leave_one_source_out"] = {
            name: _rates(hits[held], unsafe[held]) for name, _, held in by_source
        }
    model = _fit(x, y, options)
    digest = hashlib.sha256(
        "\n".join(f"{r.label}\t{r.category}\t{r.prompt}" for r in rows).encode()
    ).hexdigest()
    settings: dict[str, Any] = {"model": options.model, "fp_budget": options.fp_budget}
    if options.model == "logistic":
        settings["C"] = options.c
    else:
        settings |= {"hidden": options.hidden, "alpha": options.alpha}
    head = ClassifierHead(
        encoder=encoder.name, classes=tuple(str(k) for k in model.classes_),
        score_categories=tuple(policy.categories), blocks=BLOCKS, layers=_layers(model),
        thresholds=thresholds,
        trained_on={"source": source, "rows": len(rows), "sha256": digest,
                    "policy_version": policy.version, **settings,
                    "command": "unclip moderation-head", "out_of_fold": report},
    )  # fmt: skip
    return head, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", default=str(PROJECT_ROOT / "policies" / "default.yaml"))
    parser.add_argument("--tuning", default=str(DEFAULT_TUNING))
    parser.add_argument(
        "--out", default=None, help="head file (default: the policy's semantic.head)"
    )
    parser.add_argument(
        "--model",
        choices=("mlp", "logistic"),
        default="mlp",
        # Chosen on leave-one-source-out recall at the 1% budget (1460 tuning prompts, the
        # terms of policy 2026-12-01.3): MLP 64 units alpha 0.1 77.7%, 32 / 0.1 77.0%,
        # 64 / 0.3 76.2%; logistic C=64 70.9%, C=256 69.1%.
        help="a one-hidden-layer MLP, or logistic regression",
    )
    parser.add_argument("--hidden", type=int, default=64, help="MLP hidden units")
    parser.add_argument("--alpha", type=float, default=0.1, help="MLP L2 penalty")
    parser.add_argument(
        "--C", dest="c", type=float, default=64.0, help="logistic: inverse L2 strength"
    )
    parser.add_argument(
        "--fp-budget",
        type=float,
        default=0.01,
        help="largest share of tuning benign prompts the thresholds may flag",
    )


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    policy = load_policy(args.policy)
    out = Path(args.out) if args.out else policy.semantic_head
    if out is None:
        raise SystemExit("the policy names no semantic.head file; pass --out")
    rows = [r for r in load_labelled(args.tuning) if r.split == "tuning"]
    if not rows:
        raise SystemExit(f"{args.tuning} holds no split=tuning rows")
    head, report = train_head(policy, rows, MiniLMEncoder(), args, source=Path(args.tuning).name)
    save_head(head, out)
    print(f"unclip moderation-head: {len(rows)} tuning prompts -> {out} ({head.version})")
    print(f"  thresholds: {dict(head.thresholds)}")
    folds = report["grouped_5_fold"]
    print(
        f"  grouped 5-fold on the tuning set: recall {folds['recall']:.1%}, "
        f"false positives {folds['false_positive_rate']:.1%}"
    )
    for name, rates in report.get("leave_one_source_out", {}).items():
        print(
            f"  held-out source {name}: recall {rates['recall']:.1%}, "
            f"false positives {rates['false_positive_rate']:.1%}"
        )
    return 0
