"""`unclip jobs` and `unclip fleet` as aligned columns: ids whole, the free text cut to fit.

A fixed set of columns, two spaces apart. On a terminal the last column of the jobs list (the
prompt) is cut to the width, and a narrow one leaves out KIND, then CREATED; piped, every line
is whole, for grep, cut and awk. Nothing ever cuts an id: a line too long wraps instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console

GAP = "  "
PROMPT_MIN = 20
NARROW_DROPS = ("KIND", "CREATED")  # left out in this order on a narrow terminal
WORKER_KEYS = ("id", "state", "current_job_id", "current_stage", "jobs_done", "device", "queues")
THROUGHPUT_KEYS = ("stage", "succeeded", "failed", "lost", "cancelled", "succeeded_per_minute")


def aligned(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
            width: int | None = None) -> list[str]:  # fmt: skip
    """Header and rows padded into columns; with `width`, the last column is cut to fit it."""
    table = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = []
    for row in table:
        prefix = GAP.join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)), ""])
        last = row[-1]
        room = None if width is None else width - len(prefix)
        if room is not None and len(last) > room > 1:
            last = last[: room - 1] + "…"
        lines.append((prefix + last).rstrip())
    return lines


def _print(console: Console, lines: list[str]) -> None:
    for i, line in enumerate(lines):
        style = "bold" if i == 0 and console.is_terminal else None
        console.print(line, style=style, markup=False, highlight=False, soft_wrap=True)


def _when(value: Any) -> str:
    """An ISO timestamp as `2026-12-04 19:26:45` (UTC, as the server gives it)."""
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return "" if value is None else str(value)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return "-" if value is None or value == "" else str(value)


def print_jobs(console: Console, jobs: Sequence[dict[str, Any]]) -> None:
    """One line per job: id, status, kind, created, prompt (kind, then created, left out on a
    terminal too narrow to show PROMPT_MIN characters of the prompt)."""
    if not jobs:
        console.print("no jobs", highlight=False)
        return
    cells = {
        "ID": [_cell(job.get("id")) for job in jobs],
        "STATUS": [_cell(job.get("status")) for job in jobs],
        "KIND": [_cell(job.get("kind")) for job in jobs],
        "CREATED": [_when(job.get("created_at")) for job in jobs],
        "PROMPT": [str(job.get("prompt") or "") for job in jobs],
    }
    headers = list(cells)
    width = console.width if console.is_terminal else None
    for optional in NARROW_DROPS:
        before_prompt = sum(max(map(len, [h, *cells[h]])) + len(GAP) for h in headers[:-1])
        if width is None or before_prompt + PROMPT_MIN <= width:
            break
        headers.remove(optional)
    rows = [[cells[h][i] for h in headers] for i in range(len(jobs))]
    _print(console, aligned(headers, rows, width=width))


def _rows(items: Any, keys: Sequence[str]) -> list[list[str]]:
    return [[_cell(item.get(k)) for k in keys] for item in items or [] if isinstance(item, dict)]


def print_fleet(console: Console, view: dict[str, Any]) -> None:
    """Workers (what each runs now), queue depth per stage, recent throughput per stage."""
    throughput = _rows(view.get("throughput"), THROUGHPUT_KEYS)
    windows = [t.get("window_s") for t in view.get("throughput") or [] if isinstance(t, dict)]
    window = f" in the last {windows[0]:.0f} s" if windows and windows[0] is not None else ""
    sections = [
        ("workers", ["ID", "STATE", "JOB", "STAGE", "DONE", "DEVICE", "QUEUES"],
         _rows(view.get("workers"), WORKER_KEYS)),
        ("queues", ["STAGE", "DEPTH", "RUNNING"],
         _rows(view.get("queues"), ("stage", "depth", "running"))),
        (f"throughput{window}", ["STAGE", "SUCCEEDED", "FAILED", "LOST", "CANCELLED", "PER MIN"],
         throughput),
    ]  # fmt: skip
    for i, (title, headers, rows) in enumerate(sections):
        if i:
            console.print()
        console.print(f"{title}:" if rows else f"{title}: none", markup=False, highlight=False)
        if rows:
            _print(console, aligned(headers, rows))
