"""Fine-tuning MiniLM's top layers as the prompt classifier, against the shipped head's features.

    OMP_NUM_THREADS=2 .venv/bin/python -m bench.moderation_finetune [--top 2] [--epochs 8]
        [--lr 3e-4] [--stack]

An experiment, not a shipped check: the tuning set only (the test set is never read). The
tuning prompts (normalised as the semantic checker normalises them) go through MiniLM's first
6 - `--top` layers once (frozen, cached); the top `--top` layers (copies, trained) and a linear
layer over their mean-pooled unit states are trained with cross-entropy over benign plus the
policy's categories, on the same grouped 5-fold splits `unclip moderation-head` uses. Printed:
out-of-fold recall at 1%, 1.5% and 2% of benign prompts flagged (one threshold on
1 - P(benign)). `--stack` also rebuilds the shipped head's out-of-fold scores (its features,
MLP and n-gram model, train_head's own functions) and prints them alone and averaged with the
fine-tuned ones at a few weights, with the per-category thresholds the training command would
choose (chosen on the same out-of-fold scores, so optimistic).
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
from transformers.masking_utils import create_bidirectional_mask

from shared.moderation.normalise import normalise
from shared.moderation.policy import load_policy
from worker.moderation import train_head
from worker.moderation.prompt_eval import LabelledPrompt, load_labelled
from worker.moderation.semantic_head import BENIGN
from worker.moderation.text_encoders import MiniLMEncoder

LAYERS = 6  # all-MiniLM-L6-v2
WIDTH = 384


def recall_at(score: np.ndarray, unsafe: np.ndarray, budget: float) -> tuple[float, float]:
    """(recall, false-positive rate) at the one threshold flagging `budget` of benign rows."""
    benign = np.sort(score[~unsafe])[::-1]
    limit = benign[int(np.floor(budget * len(benign)))] + 1e-9
    return float((score[unsafe] >= limit).mean()), float((score[~unsafe] >= limit).mean())


class TopLayers(torch.nn.Module):
    """MiniLM's top layers (trainable copies) over cached lower states, then a linear layer."""

    def __init__(self, bert: torch.nn.Module, top: int, classes: int) -> None:
        super().__init__()
        self.bert: Any = bert  # only its config is used (the attention mask's format)
        layers = cast(Sequence[torch.nn.Module], cast(Any, bert).encoder.layer)
        self.layers = torch.nn.ModuleList(copy.deepcopy(list(layers)[LAYERS - top :]))
        self.drop = torch.nn.Dropout(0.1)
        self.out = torch.nn.Linear(WIDTH, classes)

    def forward(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        longest = max(s.shape[0] for s in states)
        x = torch.zeros(len(states), longest, WIDTH)
        mask = torch.zeros(len(states), longest, dtype=torch.long)
        for i, s in enumerate(states):
            x[i, : len(s)], mask[i, : len(s)] = s, 1
        # The mask the model's own forward builds for its layers (its attention implementation's
        # format), from the public helper rather than BertModel's private method, whose
        # signature changed between transformers releases.
        attention = create_bidirectional_mask(
            config=self.bert.config, inputs_embeds=x, attention_mask=mask
        )
        for layer in self.layers:
            out = layer(x, attention_mask=attention)
            x = out[0] if isinstance(out, tuple) else out
        m = mask.unsqueeze(-1).float()
        pooled = torch.nn.functional.normalize((x * m).sum(1) / m.sum(1), dim=-1)
        return cast(torch.Tensor, self.out(self.drop(pooled) * 20.0))


def lower_states(encoder: MiniLMEncoder, texts: Sequence[str], top: int) -> list[torch.Tensor]:
    """Each text's (T, 384) hidden states after MiniLM's first 6 - top layers, unpadded."""
    bert = cast(Any, encoder.model[0].auto_model)
    out: list[torch.Tensor | None] = [None] * len(texts)
    order = np.argsort([len(t) for t in texts])
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            rows = order[start : start + 64]
            batch = encoder.model.tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=256,
                return_tensors="pt",
            )  # fmt: skip
            states = bert(**batch, output_hidden_states=True).hidden_states[LAYERS - top]
            for j, i in enumerate(rows):
                out[i] = states[j, : int(batch["attention_mask"][j].sum())].clone()
    return [s for s in out if s is not None]


def fine_tuned_out_of_fold(
    encoder: MiniLMEncoder, cache: list[torch.Tensor], labels: np.ndarray, classes: int,
    folds: Sequence[tuple[np.ndarray, np.ndarray]], options: argparse.Namespace,
) -> np.ndarray:  # fmt: skip
    """(N, classes) probabilities, each row from a model trained without its fold."""
    probs = np.zeros((len(labels), classes))
    bert = cast(torch.nn.Module, encoder.model[0].auto_model)
    for f, (train, held) in enumerate(folds):
        began = time.perf_counter()
        torch.manual_seed(f)
        model = TopLayers(bert, options.top, classes)
        optimiser = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=0.01)
        for epoch in range(options.epochs):
            model.train()
            order = train[np.random.default_rng(epoch).permutation(len(train))]
            for start in range(0, len(order), 32):
                rows = order[start : start + 32]
                loss = torch.nn.functional.cross_entropy(
                    model([cache[i] for i in rows]), torch.from_numpy(labels[rows])
                )
                optimiser.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                optimiser.step()
        model.eval()
        with torch.no_grad():
            for start in range(0, len(held), 64):
                rows = held[start : start + 64]
                probs[rows] = torch.softmax(model([cache[i] for i in rows]), -1).numpy()
        print(f"  fold {f}: {time.perf_counter() - began:.0f} s", flush=True)
    return probs


def shipped_out_of_fold(
    rows: Sequence[LabelledPrompt], encoder: MiniLMEncoder, y: np.ndarray, unsafe: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The shipped head's recipe at its defaults: (N, C) MLP probabilities, (N,) n-gram P."""
    parser = argparse.ArgumentParser()
    train_head.add_arguments(parser)
    defaults = parser.parse_args([])
    policy = load_policy(defaults.policy)
    x, _ = train_head.design_matrix(policy, rows, encoder, tuple(defaults.encoder_layers))
    probs = train_head.out_of_fold(x, y, folds, defaults)
    grams = train_head.ngram_matrix(rows, defaults.ngram_bits)
    return probs, train_head.ngram_out_of_fold(grams, unsafe, folds, defaults)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--top", type=int, default=2, help="MiniLM layers fine-tuned (1-6)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--stack", action="store_true", help="also the shipped head's scores")
    parser.add_argument("--tuning", default=str(train_head.DEFAULT_TUNING))
    options = parser.parse_args()
    if not 1 <= options.top <= LAYERS:
        parser.error(f"--top {options.top} is not in 1..{LAYERS}")
    rows = [r for r in load_labelled(options.tuning) if r.split == "tuning"]
    benign = BENIGN
    y = np.array([r.category if r.label == "unsafe" and r.category else benign for r in rows])
    classes = [str(c) for c in np.unique(y)]
    labels = np.array([classes.index(str(v)) for v in y])
    unsafe = y != benign
    folds = train_head.grouped_folds(np.zeros((len(rows), 1)), y, [r.group for r in rows])
    encoder = MiniLMEncoder()
    cache = lower_states(encoder, [normalise(r.prompt).text or r.prompt for r in rows], options.top)
    print(f"{len(rows)} tuning prompts; top {options.top} layers, {options.epochs} epochs, "
          f"lr {options.lr}")  # fmt: skip
    tuned = fine_tuned_out_of_fold(encoder, cache, labels, len(classes), folds, options)
    tuned_score = 1.0 - tuned[:, classes.index(benign)]

    def line(name: str, score: np.ndarray) -> str:
        rates = [recall_at(score, unsafe, b) for b in (0.01, 0.015, 0.02)]
        return f"{name}: recall " + ", ".join(f"{r:.1%} at {fp:.1%} FP" for r, fp in rates)

    print(line("fine-tuned, one threshold", tuned_score))
    if not options.stack:
        return
    probs, grams = shipped_out_of_fold(rows, encoder, y, unsafe, folds)
    shipped = train_head.combined(probs, classes, grams, 0.3)
    print(line("shipped recipe, one threshold", shipped))
    for weight in (0.0, 0.2, 0.3, 0.5):
        score = (1 - weight) * shipped + weight * tuned_score
        mixed = (1 - weight) * probs + weight * tuned
        limits = train_head.choose_thresholds(mixed, classes, unsafe, 0.015, score=score)
        rates = train_head._rates(train_head._flags(mixed, classes, limits, score), unsafe)
        print(f"  fine-tuned weight {weight}: per-category thresholds recall "
              f"{rates['recall']:.1%}, FP {rates['false_positive_rate']:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
