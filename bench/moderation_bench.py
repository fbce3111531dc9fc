"""Moderation benchmark: recall / false positives on the labelled prompts, and check latency.

Usage: .venv/bin/python bench/moderation_bench.py [--policy policies/default.yaml]
       [--tuning tests/fixtures/moderation/tuning.jsonl]
       [--test tests/fixtures/moderation/test.jsonl] [--threads 1] [--repeat 3]
       [--no-test | --test-aggregate]

Prints a Markdown report (the "## Moderation" section of docs/benchmarks.md is this output).
The head and thresholds were fitted on the tuning set; the test set's figures are the ones
to quote (the tuning rows are shown only to make over-fitting visible). Only aggregate figures
are printed for the test set, never its prompts (`--show-tuning-misses` lists the tuning
set's misses). `--no-test` leaves the test set out (tuning figures and latency only, for
helpers who must not score it); `--test-aggregate` prints one line, the service's recall and
false-positive rate on the test set, and nothing else.
Latency is reported twice: wall clock, and CPU time of the calling thread (with torch limited
to --threads threads), because on a shared machine wall time also measures the scheduler.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from shared.moderation.lexical import LexicalChecker
from shared.moderation.policy import load_policy
from shared.moderation.verdict import Verdict
from worker.moderation.prompt_eval import (
    LabelledPrompt,
    SplitMetrics,
    evaluate,
    load_labelled,
    percentile,
)
from worker.moderation.semantic import SemanticChecker
from worker.moderation.text_encoders import MiniLMEncoder

ROOT = Path(__file__).resolve().parents[1]


def timings(fn: Callable[[str], object], prompts: Sequence[str], repeat: int) -> dict[str, float]:
    """p50 / p99 / max in ms of wall time and of this thread's CPU time."""
    fn(prompts[0])
    wall, cpu = [], []
    for _ in range(repeat):
        for prompt in prompts:
            w, c = time.perf_counter(), time.thread_time()
            fn(prompt)
            cpu.append((time.thread_time() - c) * 1000)
            wall.append((time.perf_counter() - w) * 1000)
    return {
        "wall_p50": percentile(wall, 50), "wall_p99": percentile(wall, 99),
        "cpu_p50": percentile(cpu, 50), "cpu_p99": percentile(cpu, 99), "n": len(wall),
    }  # fmt: skip


def metrics_rows(
    rows: list[LabelledPrompt],
    checks: dict[str, Callable[[str], list[Verdict]]],
    splits: Sequence[str] = ("test", "tuning"),
) -> list[tuple[str, SplitMetrics]]:
    """Every (checker set, split) pair evaluated."""
    return [
        (name, evaluate(rows, check, split)) for name, check in checks.items() for split in splits
    ]


def test_aggregate(args: argparse.Namespace) -> str:
    """One line: what the service (lexical + semantic) catches and flags on the test set."""
    torch.set_num_threads(args.threads)
    policy = load_policy(args.policy)
    rows = load_labelled(args.test)
    lexical, semantic = LexicalChecker(policy), SemanticChecker(policy, MiniLMEncoder())
    prompts = [r.prompt for r in rows]
    lex = [lexical.check(p) for p in prompts]
    verdicts = dict(zip(prompts, zip(lex, semantic.check_many(prompts, lexical=lex), strict=True),
                        strict=True))  # fmt: skip
    m = evaluate(rows, lambda p: list(verdicts[p]), "test")
    return (
        f"test set, lexical + semantic head `{semantic.head.version if semantic.head else 'none'}`:"
        f" recall {m.caught}/{m.unsafe} = {m.recall:.1%}, false positives "
        f"{m.false_positives}/{m.benign} = {m.false_positive_rate:.1%}"
    )


def report(args: argparse.Namespace) -> str:
    """The Markdown report."""
    torch.set_num_threads(args.threads)
    policy = load_policy(args.policy)
    rows = load_labelled(args.tuning, *([] if args.no_test else [args.test]))
    splits = ("tuning",) if args.no_test else ("test", "tuning")
    lexical = LexicalChecker(policy)
    start = time.perf_counter()
    semantic = SemanticChecker(policy, MiniLMEncoder())
    exemplar_only = SemanticChecker(policy, semantic.encoder, head=None)
    build_s = time.perf_counter() - start
    prompts = [r.prompt for r in rows]
    lex_v = {p: lexical.check(p) for p in prompts}
    lex_list = [lex_v[p] for p in prompts]
    sem_v = dict(zip(prompts, semantic.check_many(prompts, lexical=lex_list), strict=True))
    ex_v = dict(zip(prompts, exemplar_only.check_many(prompts, lexical=lex_list), strict=True))
    checks: dict[str, Callable[[str], list[Verdict]]] = {
        "lexical, decisive terms (API)": lambda p: [lex_v[p]],
        "exemplar similarity only": lambda p: [ex_v[p]],
        "lexical + semantic head (service)": lambda p: [lex_v[p], sem_v[p]],
    }
    counts = {split: sum(r.split == split for r in rows) for split in ("tuning", "test")}
    test_set = "left out" if args.no_test else f"`{args.test}` ({counts['test']} prompts)"
    lines = [
        f"Policy `{args.policy}` version {policy.version}, head "
        f"`{semantic.head.version if semantic.head else 'none'}`; tuning set `{args.tuning}` "
        f"({counts['tuning']} prompts), test set {test_set}. "
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}.",
        "",
        "| checks | split | unsafe | caught | recall | benign | flagged | false-positive rate |",
        "|---|---|---|---|---|---|---|---|",
    ]
    results = metrics_rows(rows, checks, splits)
    for name, m in results:
        lines.append(
            f"| {name} | {m.split} | {m.unsafe} | {m.caught} | {m.recall:.1%} | "
            f"{m.benign} | {m.false_positives} | {m.false_positive_rate:.1%} |"
        )
    service = checks["lexical + semantic head (service)"]
    categories = sorted({str(r.category) for r in rows if r.label == "unsafe"})
    lines += [
        "",
        "Unsafe prompts caught by the service, per category (counts only):",
        "",
        "| split | " + " | ".join(categories) + " |",
        "|---|" + "---|" * len(categories),
    ]
    for split in splits:
        cells = []
        for category in categories:
            picked = [r for r in rows if r.split == split and r.category == category]
            caught = evaluate(picked, service, split).caught
            cells.append(f"{caught}/{len(picked)}")
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    # Misses are listed for the tuning set only: reading the test set's misses would turn it
    # into tuning data (the test set is reported as aggregate figures, never prompt by prompt).
    combined = [
        m
        for name, m in results
        if name == "lexical + semantic head (service)" and m.split == "tuning"
    ]
    for m in combined if args.show_tuning_misses else []:
        lines += [
            "",
            f"Missed unsafe prompts ({m.split}, {len(m.missed)}): {m.missed or 'none'}",
            f"Flagged benign prompts ({m.split}, {len(m.wrongly_flagged)}): "
            f"{m.wrongly_flagged or 'none'}",
        ]
    lex = timings(lexical.check, prompts, args.repeat)
    sem = timings(lambda p: semantic.check(p, lexical=lex_v[p]), prompts[:: args.semantic_every], 1)
    lines += [
        "",
        "| check | calls | wall p50 ms | wall p99 ms | CPU p50 ms | CPU p99 ms |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {t['n']:.0f} | {t['wall_p50']:.2f} | {t['wall_p99']:.2f} | "
            f"{t['cpu_p50']:.2f} | {t['cpu_p99']:.2f} |"
            for name, t in (("lexical", lex), ("semantic (MiniLM + head)", sem))
        ),
        "",
        f"Semantic checker start-up (MiniLM load + exemplar embeddings): {build_s:.1f} s.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=str(ROOT / "policies" / "default.yaml"))
    parser.add_argument(
        "--tuning", default=str(ROOT / "tests" / "fixtures" / "moderation" / "tuning.jsonl")
    )
    parser.add_argument(
        "--test", default=str(ROOT / "tests" / "fixtures" / "moderation" / "test.jsonl")
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--semantic-every",
        type=int,
        default=1,
        help="time the semantic check on every k-th prompt (one at a time)",
    )
    parser.add_argument(
        "--show-tuning-misses",
        action="store_true",
        help="also list the tuning set's missed and wrongly flagged prompts",
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument(
        "--no-test", action="store_true", help="leave the test set out (tuning and latency only)"
    )
    only.add_argument(
        "--test-aggregate",
        action="store_true",
        help="print only the service's recall and false-positive rate on the test set",
    )
    args = parser.parse_args(argv)
    print(test_aggregate(args) if args.test_aggregate else report(args))


if __name__ == "__main__":
    main()
