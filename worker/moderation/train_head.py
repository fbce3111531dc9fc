"""`unclip moderation-head`: train the semantic stage's classifier head on the tuning set only.

    unclip moderation-head [--policy policies/default.yaml]
        [--tuning tests/fixtures/moderation/tuning.jsonl] [--out policies/default.head.json]
        [--model mlp|logistic] [--hidden 64] [--alpha 0.1] [--C 64] [--fp-budget 0.0175]
        [--ngram-weight 0.3] [--ngram-C 30] [--ngram-bits 18] [--encoder-layers 3,4,5]
        [--no-neighbours | --neighbours] [--neighbour-k 3]

Features: MiniLM embeddings of the normalised prompt, MiniLM's mean-pooled hidden states after
`--encoder-layers` (unit vectors, from the same pass), the lexical stage's per-category scores,
the policy's exemplar similarities (best per category, best benign, and their margin), and
(`--neighbours`) the similarities to the nearest tuning prompts of each class
(worker/moderation/neighbours.py): computed per split against the training rows only and never
against a row's own group, and stored in the head file (the tuning embeddings, float16).
The model is a one-hidden-layer MLP (scikit-learn, the default) or a logistic regression.
Beside it, a logistic regression over hashed character n-grams of the normalised prompt
(worker/moderation/ngram_model.py; `--ngram-weight 0` leaves it out): its P(unsafe) is averaged
with the network's unsafe probability at that weight, and the thresholds apply to the average.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.moderation.gate import PROJECT_ROOT
from shared.moderation.lexical import LexicalChecker
from shared.moderation.normalise import normalise
from shared.moderation.policy import Policy, load_policy
from worker.moderation.neighbours import NeighbourTable, out_of_group_features
from worker.moderation.ngram_model import CHAR_RANGE, WORD_RANGE, NgramModel, hashed
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


def blocks_for(encoder_layers: Sequence[int], neighbours: bool = False) -> tuple[str, ...]:
    """The head's feature blocks: BLOCKS, the pooled encoder layers when there are any, and
    the neighbour features last (computed per split, appended to the design matrix)."""
    layered = (*BLOCKS, "layer_states") if encoder_layers else BLOCKS
    return (*layered, "neighbours") if neighbours else layered


def design_matrix(
    policy: Policy,
    rows: Sequence[LabelledPrompt],
    encoder: TextEncoder,
    encoder_layers: Sequence[int] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """(N, F) features of the prompts, built as the semantic checker builds them at check time,
    and the (N, D) unit embeddings among them (what the neighbour block compares)."""
    checker = SemanticChecker(policy, encoder, head=None)
    lexical = LexicalChecker(policy)
    prompts = [r.prompt for r in rows]
    scored = []
    for start in range(0, len(prompts), 64):
        scored += checker._score_rows(  # the checker's own features
            prompts[start : start + 64], layers=encoder_layers
        )
    x = feature_matrix(
        blocks_for(encoder_layers),
        list(policy.categories),
        torch.stack([row[2] for row in scored]),
        [lexical.check(p).scores for p in prompts],
        [row[0] for row in scored],
        [row[1] for row in scored],
        torch.stack([row[3] for row in scored]),
    )
    return x.numpy(), torch.stack([row[2] for row in scored]).numpy()


def ngram_matrix(rows: Sequence[LabelledPrompt], bits: int) -> Any:
    """(N, 2**bits) sparse n-gram features, as NgramModel computes them at check time."""
    from scipy.sparse import csr_matrix

    r, c, v = [], [], []
    for i, row in enumerate(rows):
        for bucket, value in hashed(normalise(row.prompt).text or row.prompt, bits).items():
            r.append(i)
            c.append(bucket)
            v.append(value)
    return csr_matrix((v, (r, c)), shape=(len(rows), 1 << bits), dtype=np.float64)


def _fit_ngram(x: Any, unsafe: np.ndarray, options: argparse.Namespace) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=options.ngram_c, max_iter=3000).fit(x, unsafe)


def ngram_out_of_fold(
    x: Any, unsafe: np.ndarray, splits: Sequence[tuple[np.ndarray, np.ndarray]],
    options: argparse.Namespace,
) -> np.ndarray:  # fmt: skip
    """(N,) P(unsafe) of the n-gram model, each row predicted by a model that never saw it."""
    out = np.zeros(len(unsafe))
    for train, held in splits:
        out[held] = _fit_ngram(x[train], unsafe[train], options).predict_proba(x[held])[:, 1]
    return out


def _fit(x: np.ndarray, y: np.ndarray, options: argparse.Namespace) -> Any:
    if options.model == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=options.c, max_iter=3000, class_weight="balanced").fit(x, y)
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(
        hidden_layer_sizes=(options.hidden,), alpha=options.alpha, max_iter=600, random_state=0
    ).fit(x, y)


# Extra features of (reference rows, query rows), computed per split: the neighbour block.
Extra = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _with(
    x: np.ndarray, extra: Extra | None, reference: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    return x[rows] if extra is None else np.hstack([x[rows], extra(reference, rows)])


def out_of_fold(
    x: np.ndarray,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    options: argparse.Namespace,
    extra: Extra | None = None,
) -> np.ndarray:
    """(N, C) probabilities, each row predicted by a model that never saw its fold (`extra`
    features of a fold's rows are computed against its training rows only)."""
    classes = list(np.unique(y))
    probs = np.zeros((len(y), len(classes)))
    for train, held in splits:
        model = _fit(_with(x, extra, train, train), y[train], options)
        columns = [classes.index(k) for k in model.classes_]
        probs[np.ix_(held, np.array(columns))] = model.predict_proba(_with(x, extra, train, held))
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


def combined(probs: np.ndarray, classes: Sequence[str], ngram: np.ndarray | None,
             weight: float) -> np.ndarray:  # fmt: skip
    """ClassifierHead.unsafe_score for many rows: (1 - P(benign)) averaged with the n-gram's."""
    mass = 1.0 - probs[:, list(classes).index(BENIGN)]
    return mass if ngram is None else (1.0 - weight) * mass + weight * ngram


def _flags(
    probs: np.ndarray,
    classes: Sequence[str],
    thresholds: dict[str, float],
    score: np.ndarray | None = None,
) -> np.ndarray:
    """What ClassifierHead.flagged decides, for many rows at once (`score`: the unsafe score,
    by default the network's unsafe probability)."""
    benign = list(classes).index(BENIGN)
    unsafe_mass = 1.0 - probs[:, benign] if score is None else score
    masked = probs.copy()
    masked[:, benign] = -1.0
    top = np.array(classes)[masked.argmax(axis=1)]
    limits = np.array([thresholds.get(str(t), 1.1) for t in top])
    return np.asarray(unsafe_mass >= limits)


def choose_thresholds(
    probs: np.ndarray,
    classes: Sequence[str],
    unsafe: np.ndarray,
    fp_budget: float,
    passes: int = 3,
    score: np.ndarray | None = None,
) -> dict[str, float]:
    """Per-category thresholds: most unsafe rows flagged with benign flagged <= fp_budget.

    Starts from the lowest common threshold within the budget, then moves each category's
    own threshold while the budget holds (so the result is never worse than the common one).
    """
    cats = [str(c) for c in classes if c != BENIGN]
    limit = int(np.floor(fp_budget * (~unsafe).sum()))

    def tally(th: dict[str, float]) -> tuple[int, int]:
        hits = _flags(probs, classes, th, score)
        return int((hits & unsafe).sum()), int((hits & ~unsafe).sum())

    common = next(
        (float(t) for t in GRID if tally(dict.fromkeys(cats, float(t)))[1] <= limit),
        float(GRID[-1]),
    )
    chosen = dict.fromkeys(cats, common)
    for _ in range(passes):
        for cat in cats:
            best = (*tally(chosen), chosen[cat])
            best = (best[0], -best[1], best[2])
            for t in GRID:
                caught, fps = tally({**chosen, cat: float(t)})
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
    layers = tuple(options.encoder_layers)
    x, embeddings = design_matrix(policy, rows, encoder, layers)
    y = np.array([r.category if r.label == "unsafe" and r.category else BENIGN for r in rows])
    unsafe = np.array([r.label == "unsafe" for r in rows])
    classes = [str(c) for c in np.unique(y)]
    labels = np.array([classes.index(str(v)) for v in y])
    group_ids = np.unique([r.group for r in rows], return_inverse=True)[1]

    def near(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
        return out_of_group_features(
            embeddings, labels, classes, group_ids, reference, queries, options.neighbour_k
        )

    extra = near if options.neighbours else None
    weight = options.ngram_weight
    grams = ngram_matrix(rows, options.ngram_bits) if weight > 0 else None
    folds = grouped_folds(x, y, [r.group for r in rows])
    probs = out_of_fold(x, y, folds, options, extra)
    oof_ngram = ngram_out_of_fold(grams, unsafe, folds, options) if grams is not None else None
    score = combined(probs, classes, oof_ngram, weight)
    thresholds = choose_thresholds(probs, classes, unsafe, options.fp_budget, score=score)
    report: dict[str, Any] = {
        "grouped_5_fold": _rates(_flags(probs, classes, thresholds, score), unsafe)
    }
    by_source = source_folds(rows)
    if len(by_source) > 1:
        splits = [(tr, te) for _, tr, te in by_source]
        held_probs = out_of_fold(x, y, splits, options, extra)
        held_ngram = (
            ngram_out_of_fold(grams, unsafe, splits, options) if grams is not None else None
        )
        held_score = combined(held_probs, classes, held_ngram, weight)
        # Thresholds chosen on these out-of-source predictions themselves: how well the
        # scores rank a source written apart, at the same budget.
        held_thresholds = choose_thresholds(
            held_probs, classes, unsafe, options.fp_budget, score=held_score
        )
        hits = _flags(held_probs, classes, thresholds, held_score)
        report["leave_one_source_out"] = {
            name: _rates(hits[held], unsafe[held]) for name, _, held in by_source
        }
        report["leave_one_source_out_pooled"] = _rates(hits, unsafe)
        report["leave_one_source_out_own_thresholds"] = _rates(
            _flags(held_probs, classes, held_thresholds, held_score), unsafe
        )
    everyone = np.arange(len(rows))
    model = _fit(_with(x, extra, everyone, everyone), y, options)
    table = None
    if extra is not None:
        table = NeighbourTable(
            embeddings=torch.from_numpy(embeddings).to(torch.float16).float(),
            labels=torch.from_numpy(labels).long(), classes=tuple(classes), k=options.neighbour_k,
        )  # fmt: skip
    ngram = None
    if grams is not None:
        fitted = _fit_ngram(grams, unsafe, options)
        coef = fitted.coef_[0]
        kept = np.flatnonzero(np.abs(coef) >= 1e-4)
        ngram = NgramModel(
            bits=options.ngram_bits,
            weights={int(k): float(coef[k]) for k in kept},
            bias=float(fitted.intercept_[0]),
        )
    digest = hashlib.sha256(
        "\n".join(f"{r.label}\t{r.category}\t{r.prompt}" for r in rows).encode()
    ).hexdigest()
    settings: dict[str, Any] = {"model": options.model, "fp_budget": options.fp_budget,
                                "encoder_layers": list(layers)}  # fmt: skip
    if table is not None:
        settings["neighbour_k"] = options.neighbour_k
    if ngram is not None:
        ranges = {"char": list(CHAR_RANGE), "word": list(WORD_RANGE)}
        settings |= {"ngram_C": options.ngram_c, "ngram_bits": options.ngram_bits,
                     "ngram_ranges": ranges}  # fmt: skip
    if options.model == "logistic":
        settings["C"] = options.c
    else:
        settings |= {"hidden": options.hidden, "alpha": options.alpha}
    head = ClassifierHead(
        encoder=encoder.name, classes=tuple(str(k) for k in model.classes_),
        score_categories=tuple(policy.categories), blocks=blocks_for(layers, table is not None),
        layers=_layers(model), thresholds=thresholds, ngram=ngram,
        ngram_weight=weight if ngram is not None else 0.0, encoder_layers=layers,
        neighbours=table,
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
    parser.add_argument(
        "--encoder-layers",
        type=_layer_list,
        # Chosen on grouped 5-fold recall at the 1.5% budget (3194 tuning prompts, per-category
        # thresholds): none 78.6%; MiniLM layers 3,4,5 85.4% (on the earlier 2945: none 79.7%,
        # 4,5 82.2%, 3,4,5 84.6%, 2,3,4,5 83.3%).
        default=(3, 4, 5),
        help="MiniLM layers whose pooled states join the features, comma-separated ('' for none)",
    )
    parser.add_argument(
        "--neighbours",
        action=argparse.BooleanOptionalAction,
        # Off: on grouped 5-fold recall at the 1.5% budget (3194 tuning prompts) 83.8% with,
        # 85.2% without; leave-one-source-out, own thresholds, 71.5% / 72.7%.
        default=False,
        help="similarities to the nearest tuning prompts join the features (stored in the head)",
    )
    parser.add_argument(
        "--neighbour-k", type=int, default=3, help="neighbours: the k best unsafe / benign averaged"
    )
    parser.add_argument("--alpha", type=float, default=0.1, help="MLP L2 penalty")
    parser.add_argument(
        "--C", dest="c", type=float, default=64.0, help="logistic: inverse L2 strength"
    )
    parser.add_argument(
        "--ngram-weight",
        type=float,
        # Chosen on grouped 5-fold recall (2825 tuning prompts): the MLP alone 67.4% at 1%
        # false positives / 77.0% at 2%; with the n-gram model at 0.3, 76.8% / 81.8%; at 0.5,
        # 74.5% / 80.5%.
        default=0.3,
        help="share of the n-gram model's P(unsafe) in the unsafe score (0: no n-gram model)",
    )
    parser.add_argument(
        "--ngram-C", dest="ngram_c", type=float, default=30.0, help="n-gram: inverse L2 strength"
    )
    parser.add_argument("--ngram-bits", type=int, default=18, help="n-gram: 2**bits hash buckets")
    parser.add_argument(
        "--fp-budget",
        type=float,
        # 1.75%: below the issue's 2% target, leaving room for the thresholds' optimism (they
        # are chosen on the same out-of-fold predictions they are scored on). Chosen on the
        # tuning set: against 1.5% it gained 0.8 points of grouped-CV recall and 2.7 of
        # leave-one-source-out recall (docs/benchmarks.md "Moderation").
        default=0.0175,
        help="largest share of tuning benign prompts the thresholds may flag",
    )


def _layer_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--encoder-layers {text!r} must be comma-separated layer numbers, e.g. 3,4,5"
        ) from exc


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
    for key in ("leave_one_source_out_pooled", "leave_one_source_out_own_thresholds"):
        if key in report:
            print(
                f"  {key.replace('_', ' ')}: recall {report[key]['recall']:.1%}, "
                f"false positives {report[key]['false_positive_rate']:.1%}"
            )
    for name, rates in report.get("leave_one_source_out", {}).items():
        print(
            f"  held-out source {name}: recall {rates['recall']:.1%}, "
            f"false positives {rates['false_positive_rate']:.1%}"
        )
    return 0
