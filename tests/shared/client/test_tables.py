"""`unclip jobs` / `unclip fleet` output: a fixed set of columns, ids whole, piped or not."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from shared.client.tables import aligned, print_fleet, print_jobs

IDS = ["02a9ba2e-aa2c-4b7e-9d9e-0123456789ab", "7e7bc928-1111-4b7e-9d9e-0123456789ac"]
PROMPT = "a cartoon of a man punching his annoying coworker, in the style of an old newspaper"


def _jobs() -> list[dict[str, Any]]:
    return [{"id": IDS[0], "status": "succeeded", "kind": "generate", "stage": "upsampler",
             "created_at": "2026-12-04T19:26:45.123456Z", "prompt": PROMPT},
            {"id": IDS[1], "status": "queued", "kind": "variation", "stage": None,
             "created_at": "2026-12-04T19:27:01Z", "prompt": ""}]  # fmt: skip


def _printed(print_fn: Any, value: Any, *, terminal: bool, width: int = 80) -> list[str]:
    text = io.StringIO()
    console = Console(file=text, force_terminal=terminal, width=width, color_system=None)
    print_fn(console, value)
    return text.getvalue().splitlines()


def test_aligned_pads_columns_and_cuts_only_the_last() -> None:
    lines = aligned(["ID", "NOTE"], [["abc", "x" * 30], ["a", "short"]], width=20)
    assert lines == ["ID   NOTE", "abc  xxxxxxxxxxxxxx…", "a    short"]


def test_jobs_piped_are_whole_lines() -> None:
    lines = _printed(print_jobs, _jobs(), terminal=False)
    assert lines[0].split() == ["ID", "STATUS", "KIND", "CREATED", "PROMPT"]
    assert lines[1].split()[:5] == [IDS[0], "succeeded", "generate", "2026-12-04", "19:26:45"]
    assert lines[1].endswith(PROMPT)
    assert lines[2].split() == [IDS[1], "queued", "variation", "2026-12-04", "19:27:01"]


def test_jobs_on_a_terminal_keep_ids_whole_and_cut_the_prompt_to_the_width() -> None:
    wide = _printed(print_jobs, _jobs(), terminal=True, width=120)
    assert wide[0].split() == ["ID", "STATUS", "KIND", "CREATED", "PROMPT"]
    narrow = _printed(print_jobs, _jobs(), terminal=True, width=80)
    assert narrow[0].split() == ["ID", "STATUS", "PROMPT"]  # room for the prompt
    for lines, width in ((wide, 120), (narrow, 80)):
        assert all(len(line) <= width for line in lines)
        assert [line.split()[0] for line in lines[1:]] == IDS
        assert lines[1].endswith("…") and PROMPT[:15] in lines[1]


def test_no_jobs_says_so() -> None:
    assert _printed(print_jobs, [], terminal=False) == ["no jobs"]


def test_fleet_shows_workers_queues_and_throughput_readably() -> None:
    view = {
        "generated_at": "2026-12-04T19:30:00Z", "stale_after_s": 30.0,
        "workers": [{"id": "celery@gpu-node-1:4242", "node": "celery@gpu-node-1", "host": "h",
                     "pid": 4242, "queues": ["prior", "decoder", "upsampler"], "device": "cuda:0",
                     "dtype": "float16", "family": "karlo", "state": "busy",
                     "started_at": "2026-12-04T19:00:00Z", "last_heartbeat_at": "x",
                     "stopped_at": None, "current_job_id": IDS[0], "current_stage": "decoder",
                     "current_since": "x", "jobs_done": 17}],
        "queues": [{"stage": "prior", "depth": 3, "running": 1}],
        "throughput": [{"stage": "prior", "window_s": 600.0, "succeeded": 4, "failed": 0,
                        "lost": 1, "cancelled": 0, "succeeded_per_minute": 0.4}],
    }  # fmt: skip
    lines = _printed(print_fleet, view, terminal=False)
    assert lines[0] == "workers:"
    assert lines[1].split() == ["ID", "STATE", "JOB", "STAGE", "DONE", "DEVICE", "QUEUES"]
    assert lines[2].split() == ["celery@gpu-node-1:4242", "busy", IDS[0], "decoder", "17",
                                "cuda:0", "prior,decoder,upsampler"]  # fmt: skip
    assert "queues:" in lines and "throughput in the last 600 s:" in lines
    assert ["prior", "4", "0", "1", "0", "0.4"] in [line.split() for line in lines]


def test_an_empty_fleet_says_so() -> None:
    lines = _printed(print_fleet, {"workers": [], "queues": [], "throughput": []}, terminal=False)
    assert [line for line in lines if line] == ["workers: none", "queues: none",
                                                "throughput: none"]  # fmt: skip
