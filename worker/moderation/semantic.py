"""Semantic prompt check: a classifier head over sentence embeddings, beside exemplar similarity.

The head (worker/moderation/semantic_head.py, trained on the tuning set) sees the MiniLM
embedding of the normalised prompt, MiniLM's pooled middle layers from the same pass (when the
head lists `encoder_layers`), the lexical stage's per-category scores and the exemplar
similarities below, so a term the lexical stage found ambiguous ("nude" in "a nude Venus in
a museum") is judged in context here. Its unsafe probability is averaged with a hashed
character n-gram model's (stored in the head file), which still reads misspelt words. A head
with a `neighbours` table (worker/moderation/neighbours.py) also reads the prompt's similarity
to the nearest tuning prompts of each class, from the same embedding.
Exemplar similarity is always computed and recorded; it decides only where the policy ships no
head (or the head was trained for another encoder).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from shared.moderation.lexical import LexicalChecker
from shared.moderation.normalise import normalise
from shared.moderation.policy import Policy
from shared.moderation.verdict import Decision, Stage, Verdict, strictest
from worker.moderation.semantic_head import ClassifierHead, load_head
from worker.moderation.text_encoders import LayeredTextEncoder, TextEncoder

CHECKER_VERSION = "semantic/2"
# Exemplar scores, benign score, embedding (D,), and the head's encoder layer states (L, D).
_Row = tuple[dict[str, float], float, torch.Tensor, torch.Tensor]


class SemanticChecker:
    """Encodes the policy's exemplars once; `check` encodes one prompt (~10 ms with MiniLM)."""

    def __init__(
        self,
        policy: Policy,
        encoder: TextEncoder,
        head: ClassifierHead | None | Literal["policy"] = "policy",
    ) -> None:
        self.policy = policy
        self.encoder = encoder
        if head == "policy":
            head = load_head(policy.semantic_head) if policy.semantic_head else None
        self.head = head
        self.lexical = LexicalChecker(policy)
        names = [n for n, c in policy.categories.items() if c.exemplars]
        texts = [e for n in names for e in policy.categories[n].exemplars]
        owners = [n for n in names for _ in policy.categories[n].exemplars]
        self.names = names
        self.exemplars = encoder.encode(texts) if texts else torch.zeros(0, 1)  # (E, D)
        self.owner = torch.tensor([names.index(o) for o in owners], dtype=torch.long)  # (E,)
        benign = policy.benign_exemplars
        self.benign = encoder.encode(list(benign)) if benign else None  # (B, D)

    def _encode(
        self, texts: Sequence[str], layers: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) embeddings and the (N, L, D) pooled states of `layers` from the same pass
        (by default those the head reads; none: (N, 0, D))."""
        if layers is None:
            layers = self.head.encoder_layers if self.head and self.head_calibrated else ()
        if not layers:
            queries = self.encoder.encode(texts)
            return queries, torch.zeros(len(texts), 0, queries.shape[-1])
        if not isinstance(self.encoder, LayeredTextEncoder):
            raise TypeError(
                f"the head reads encoder layers {list(layers)}, which encoder "
                f"{self.encoder.name!r} does not hand out (it has no encode_layers)"
            )
        return self.encoder.encode_layers(texts, layers)

    def _score_rows(
        self, prompts: Sequence[str], layers: Sequence[int] | None = None
    ) -> list[_Row]:
        texts = [normalise(p).text or p for p in prompts]
        queries, states = self._encode(texts, layers)  # (N, D), (N, L, D)
        sims = queries @ self.exemplars.T  # (N, E)
        best = torch.full((len(texts), len(self.names)), -1.0).scatter_reduce(
            1, self.owner.expand(len(texts), -1), sims, reduce="amax"
        )  # (N, C)
        if self.benign is not None:
            benign = (queries @ self.benign.T).max(dim=1).values.tolist()  # (N,)
        else:
            benign = [-1.0] * len(texts)
        return [
            ({n: float(row[i]) for i, n in enumerate(self.names)}, float(b), q, h)
            for row, b, q, h in zip(best, benign, queries, states, strict=True)
        ]

    def scores(self, prompt: str) -> tuple[dict[str, float], float]:
        """Best exemplar similarity per category, and the best benign-exemplar similarity."""
        exemplar, benign, _, _ = self._score_rows([prompt])[0]
        return exemplar, benign

    def check(
        self, prompt: str, *, stage: Stage = "prompt", lexical: Verdict | None = None
    ) -> Verdict:
        """Judge one prompt; `lexical` is the lexical stage's verdict (computed when absent)."""
        return self.check_many([prompt], lexical=[lexical] if lexical else None, stage=stage)[0]

    def check_many(
        self,
        prompts: Sequence[str],
        *,
        batch: int = 64,
        lexical: Sequence[Verdict] | None = None,
        stage: Stage = "prompt",
    ) -> list[Verdict]:
        """`check` for many prompts, encoded in batches (the same verdicts, far fewer passes)."""
        lex = list(lexical) if lexical is not None else [self.lexical.check(p) for p in prompts]
        rows: list[_Row] = []
        for start in range(0, len(prompts), batch):
            rows += self._score_rows(prompts[start : start + batch])
        if self.head is not None and self.head_calibrated:
            probs = self.head.probabilities(
                torch.stack([r[2] for r in rows]),
                [v.scores for v in lex],
                exemplar=[r[0] for r in rows],
                benign=[r[1] for r in rows],
                layer_states=torch.stack([r[3] for r in rows]),
            )
            texts = [normalise(p).text or p for p in prompts]
            found = self.head.ngram_probabilities(texts)
            ngram: list[float | None] = list(found) if found is not None else [None] * len(rows)
            return [
                self._head_verdict(r, p, v, stage, n)
                for r, p, v, n in zip(rows, probs, lex, ngram, strict=True)
            ]
        return [self._exemplar_verdict(r, v, stage) for r, v in zip(rows, lex, strict=True)]

    @property
    def head_calibrated(self) -> bool:
        """Whether the shipped head was trained on this encoder's embeddings."""
        return self.head is not None and self.head.encoder == self.encoder.name

    @property
    def calibrated(self) -> bool:
        """Whether the thresholds in use (the head's, else the exemplars') fit this encoder."""
        return self.head_calibrated or self.encoder.name in self.policy.semantic_calibrated_for

    def _detail(self, row: _Row, lexical: Verdict) -> dict[str, object]:
        exemplar, benign, _, _ = row
        return {
            "encoder": self.encoder.name,
            "calibrated": self.calibrated,
            "exemplar_scores": {k: round(v, 6) for k, v in exemplar.items()},
            "benign_score": round(benign, 6),
            "margin": self.policy.semantic_margin,
            "referred": list(lexical.detail.get("referred", [])),
        }

    def _head_verdict(
        self,
        row: _Row,
        probs: dict[str, float],
        lexical: Verdict,
        stage: Stage,
        ngram: float | None = None,
    ) -> Verdict:
        assert self.head is not None
        top = self.head.flagged(probs, ngram)
        extra = {} if ngram is None else {"ngram_probability": round(ngram, 6)}
        category = self.policy.categories.get(top) if top else None
        fired = category is not None and category.action is not Decision.ALLOW
        return Verdict(
            stage=stage,
            checker="semantic",
            checker_version=f"{CHECKER_VERSION}+{self.encoder.name}+{self.head.version}",
            policy_version=self.policy.version,
            decision=category.action if fired and category else Decision.ALLOW,
            scores={k: round(v, 6) for k, v in probs.items()},
            thresholds=dict(self.head.thresholds),
            flagged=(top,) if fired and top else (),
            detail={
                **self._detail(row, lexical),
                "head": self.head.version,
                "unsafe_probability": round(sum(probs.values()), 6),
                **extra,
                "unsafe_score": round(self.head.unsafe_score(probs, ngram), 6),
            },
        )

    def _exemplar_verdict(self, row: _Row, lexical: Verdict, stage: Stage) -> Verdict:
        scores, benign, _, _ = row
        margin = self.policy.semantic_margin
        decisions: dict[str, Decision] = {}
        thresholds: dict[str, float] = {}
        for name, score in scores.items():
            category = self.policy.categories[name]
            limits = category.thresholds
            thresholds[name] = limits.semantic
            if not self.calibrated or category.action is Decision.ALLOW or score - benign < margin:
                continue
            if score >= limits.semantic:
                decisions[name] = category.action
            elif limits.semantic_hold is not None and score >= limits.semantic_hold:
                decisions[name] = Decision.HOLD
        return Verdict(
            stage=stage,
            checker="semantic",
            checker_version=f"{CHECKER_VERSION}+{self.encoder.name}",
            policy_version=self.policy.version,
            decision=(
                strictest(decisions.values())
                if self.calibrated
                else self.policy.semantic_when_uncalibrated
            ),
            scores=scores,
            thresholds=thresholds,
            flagged=tuple(decisions),
            detail=self._detail(row, lexical),
        )
