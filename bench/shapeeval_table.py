"""Print a ShapeEval report.json as the markdown tables of docs/benchmarks.md.

Run: .venv/bin/python bench/shapeeval_table.py models/shapes/shapeeval.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def generation_table(gen: dict[str, Any]) -> list[str]:
    lines = [
        "| one object | n | colour | shape | size | position | all four |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, label in (
        ("single_seen", "seen pairs"),
        ("single_heldout", "held-out pairs"),
        ("single_all", "all"),
    ):
        a = gen[key]
        lines.append(
            f"| {label} | {a['n']} | {pct(a['colour'])} | {pct(a['shape'])} | "
            f"{pct(a['size'])} | {pct(a['position'])} | {pct(a['all_right'])} |"
        )
    lines += [
        "",
        "| two objects | n | all right | both pairs present | relation right |",
        "|---|---|---|---|---|",
    ]
    for key, label in (("two_seen", "seen"), ("two_heldout", "held-out"), ("two_all", "all")):
        t = gen[key]
        lines.append(
            f"| {label} | {t['n']} | {pct(t['all_right'])} | {pct(t['both_present'])} "
            f"| {pct(t['relation'])} |"
        )
    return lines


def steps_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| sampler | steps (prior, decoder, upsampler) | n | colour | shape | size | "
        "position | all four | s / image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        a = row["accuracy"]
        lines.append(
            f"| {row['sampler']} | {row['steps']} | {a['n']} | {pct(a['colour'])} | "
            f"{pct(a['shape'])} | {pct(a['size'])} | {pct(a['position'])} | "
            f"{pct(a['all_right'])} | {row['seconds_per_image']:.2f} |"
        )
    return lines


def other_lines(report: dict[str, Any]) -> list[str]:
    var, edit, ret = report["variations"], report["edits"], report["retrieval"]
    psnr = edit["psnr_outside_mean"]
    return [
        f"- variations (n={var['n']}): colour kept {pct(var['colour'])}, shape kept "
        f"{pct(var['shape'])}, both {pct(var['colour_and_shape'])}",
        f"- edits (n={edit['n']}): requested colour in the mask {pct(edit['colour_in_mask'])}, "
        f"shape {pct(edit['shape_in_mask'])}, PSNR outside the mask "
        f"{'-' if psnr is None else f'{psnr:.1f}'} dB (mean)",
        f"- CLIP text -> image top-1 (n={ret['n']}): {pct(ret['top1'])} "
        f"(chance {pct(ret['chance'])})",
        f"- generation time: {report['generation']['seconds_per_image']:.2f} s per image "
        f"(batches of up to 16 requests); whole run {report['wall_seconds'] / 60:.1f} min",
    ]


def target_lines(targets: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | wanted | reached | met |", "|---|---|---|---|"]
    for t in targets:
        value = "-" if t["value"] is None else f"{t['value']:.3g}"
        met = {True: "yes", False: "no", None: "n/a"}[t["met"]]
        lines.append(f"| {t['name']} | {t['target']} | {value} | {met} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("report", type=Path, help="report.json written by `unclip eval`")
    report = json.loads(parser.parse_args().report.read_text())
    blocks = [
        generation_table(report["generation"]),
        other_lines(report),
        steps_table(report["steps"]),
        target_lines(report["targets"]),
    ]
    print("\n\n".join("\n".join(block) for block in blocks))


if __name__ == "__main__":
    main()
