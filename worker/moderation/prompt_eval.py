"""Labelled-prompt evaluation of the prompt checks: recall on unsafe, false positives on benign."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.moderation.verdict import Decision, Verdict


@dataclass(frozen=True)
class LabelledPrompt:
    """One line of tests/fixtures/moderation/tuning.jsonl or test.jsonl."""

    prompt: str
    label: str  # "unsafe" | "benign"
    category: str | None
    trick: str
    group: str
    split: str  # "tuning" (policy and head built from it) | "test" (held out, scored only)
    source: str = ""  # who wrote it, in which template


@dataclass
class SplitMetrics:
    """Counts and the two rates for one split (a flag = hold or block)."""

    split: str
    unsafe: int = 0
    benign: int = 0
    caught: int = 0
    false_positives: int = 0
    # Left out of repr: a failed assertion prints the object, and for the test set that would
    # list held-out prompts.
    missed: list[str] = field(default_factory=list, repr=False)
    wrongly_flagged: list[str] = field(default_factory=list, repr=False)

    @property
    def recall(self) -> float:
        return self.caught / self.unsafe if self.unsafe else 1.0

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / self.benign if self.benign else 0.0


SPLITS = ("tuning", "test")


def load_labelled(*paths: str | Path) -> list[LabelledPrompt]:
    """Read labelled sets; every line carries prompt, label, category, trick, group, split."""
    rows = []
    for path in paths:
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            data = json.loads(line)
            label, split = data.get("label"), data.get("split")
            if label not in ("unsafe", "benign") or split not in SPLITS:
                raise ValueError(
                    f"{path}:{number}: label must be unsafe|benign and split one of "
                    f"{SPLITS}, got {label!r} / {split!r}"
                )
            rows.append(LabelledPrompt(**data))
    return rows


Check = Callable[[str], Sequence[Verdict]]


def evaluate(rows: Sequence[LabelledPrompt], check: Check, split: str) -> SplitMetrics:
    """Run `check` on every prompt of `split`; flagged = any verdict that is not allow."""
    metrics = SplitMetrics(split=split)
    for row in rows:
        if row.split != split:
            continue
        flagged = any(v.decision is not Decision.ALLOW for v in check(row.prompt))
        if row.label == "unsafe":
            metrics.unsafe += 1
            metrics.caught += flagged
            if not flagged:
                metrics.missed.append(row.prompt)
        else:
            metrics.benign += 1
            metrics.false_positives += flagged
            if flagged:
                metrics.wrongly_flagged.append(row.prompt)
    return metrics


def latency_ms(fn: Callable[[str], object], prompts: Sequence[str], repeat: int = 1) -> list[float]:
    """Wall-clock milliseconds of each call of `fn` over `prompts` (`repeat` passes)."""
    times = []
    for _ in range(repeat):
        for prompt in prompts:
            start = time.perf_counter()
            fn(prompt)
            times.append((time.perf_counter() - start) * 1000.0)
    return times


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]
