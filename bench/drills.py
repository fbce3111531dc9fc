"""Failure drills against real PostgreSQL, Redis and `unclip` worker processes; prints a table.

Usage, from the repository root (PostgreSQL on 127.0.0.1:5432 and Redis on :6379 running):
    .venv/bin/python -m bench.drills                       # every drill, ~15-25 min on 2 cores
    .venv/bin/python -m bench.drills --only pool-kill,redis-flush --deadline-s 90
    .venv/bin/python -m bench.drills --list
    .venv/bin/python -m bench.drills --markdown out/drills.md --json out/drills.jsonl --keep

Columns: submitted = job rows the drill created (a POST that timed out may still have made
one); lost = not terminal by the deadline; refused = POSTs answered without a job (503, or
no answer in time); rerendered = jobs whose images were rendered by more than one attempt
(wasted work, not a duplicate); s = from the drill's first job until all ended (or the
deadline).

Each drill gets its own stack (bench/drills_lib/stack.py): a fresh PostgreSQL database and
Redis db index, TCP proxies in front of both, `unclip api`, `unclip worker` processes on the
tiny reference family, and `unclip sweeper` where the tree has it. After its damage a drill's
jobs get `--deadline-s` seconds to end. Pass: 0 lost (not terminal by the deadline) and 0
duplicated (a stage completed twice, or more published images than asked); the drill's own
checks (e.g. "the poison job failed, the healthy ones succeeded") are listed beside it.
The shared servers are never stopped; outages go through the proxies.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.drills_lib.drill import Drill, run_in
from bench.drills_lib.jobs import DrillResult
from bench.drills_lib.registry import DRILLS, select
from bench.drills_lib.resources import make_family
from bench.drills_lib.stack import Stack, StackConfig, drain_available, sweeper_available

COLUMNS = (
    "drill",
    "submitted",
    "succeeded",
    "failed",
    "lost",
    "duplicated",
    "refused",
    "rerendered",
    "s",
    "verdict",
    "checks failed / notes",
)


def run_drill(
    drill: Drill, *, deadline_s: float, config: StackConfig, family: Path, keep: bool
) -> DrillResult:
    """`drill` on a stack of its own, torn down after (its logs kept with `keep`)."""
    try:
        with Stack(drill.name, config, keep=keep, family=family) as stack:
            if keep:
                print(f"   logs: {stack.work_dir / 'logs'}", flush=True)
            return run_in(stack, drill, deadline_s=deadline_s)
    except Exception as exc:  # the stack would not start: a row that says so
        return DrillResult(drill.name, error=f"{type(exc).__name__}: {str(exc)[:300]}")


def verdict(result: DrillResult) -> str:
    if result.error:
        return "ERROR"
    criteria = result.lost == 0 and result.duplicated == 0
    if criteria and not result.failed_checks():
        return "pass"
    return "FAIL" if not criteria else "criteria ok, check FAIL"


def row(result: DrillResult) -> list[str]:
    detail = [f"FAIL: {c}" for c in result.failed_checks()] + result.notes
    if result.error:
        detail.insert(0, result.error)
    return [
        result.name,
        str(result.submitted),
        str(result.succeeded),
        str(result.failed),
        str(result.lost),
        str(result.duplicated),
        str(result.refused),
        str(result.rerendered),
        f"{result.seconds:.0f}",
        verdict(result),
        "; ".join(detail),
    ]


def markdown(results: list[DrillResult]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for result in results:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in row(result)) + " |")
    return "\n".join(lines) + "\n"


def print_table(results: list[DrillResult]) -> None:
    rows = [list(COLUMNS), *(row(r) for r in results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    for cells in rows:
        head = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False))
        print(f"{head}  {cells[-1]}")


def run_all(drills: list[Drill], args: argparse.Namespace, family: Path) -> list[DrillResult]:
    results = []
    for drill in drills:
        started = time.monotonic()
        print(f"-- {drill.name}: {drill.what}", flush=True)
        result = run_drill(
            drill, deadline_s=args.deadline_s, config=StackConfig(), family=family, keep=args.keep
        )
        results.append(result)
        counts = zip(COLUMNS[1:8], row(result)[1:8], strict=True)
        print(
            f"   {verdict(result)} in {time.monotonic() - started:.0f} s: "
            + " ".join(f"{k}={v}" for k, v in counts),
            flush=True,
        )
    return results


def write_outputs(
    results: list[DrillResult], *, markdown_path: Path | None, json_path: Path | None
) -> None:
    if markdown_path:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(markdown(results))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        with json_path.open("w") as out:
            for result in results:
                record = {**dataclasses.asdict(result), "verdict": verdict(result)}
                out.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated drill names (default: all)")
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=120.0,
        help="how long a drill's jobs may take to end after its damage",
    )
    parser.add_argument("--list", action="store_true", help="list the drills and exit")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--json", type=Path, help="also write one JSON object per drill here")
    parser.add_argument("--keep", action="store_true", help="keep each stack's logs and data")
    args = parser.parse_args(argv)
    if args.list:
        for drill in DRILLS:
            print(f"{drill.name:<16} {drill.what}")
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(
        f"sweeper: {'yes' if sweeper_available() else 'no (unclip sweeper missing)'}; "
        f"drain setting: {'yes' if drain_available() else 'no'}",
        flush=True,
    )
    family_dir = Path(tempfile.mkdtemp(prefix="unclip-drill-family-"))
    try:
        results = run_all(select(args.only), args, make_family(family_dir))
    finally:
        shutil.rmtree(family_dir, ignore_errors=True)
    print()
    print_table(results)
    write_outputs(results, markdown_path=args.markdown, json_path=args.json)
    return 0 if all(verdict(r) == "pass" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
