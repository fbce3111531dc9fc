"""ShapeEval's report: results of each section, the issue's targets, JSON and a text table."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.evaluation.scoring import SingleAccuracy, TwoAccuracy

PSNR_CAP = 99.0  # dB reported when the kept pixels come back exactly (the PSNR is infinite)


@dataclass(frozen=True)
class GenerationResult:
    """Text-to-image prompts rendered with the family's default settings."""

    single_seen: SingleAccuracy
    single_heldout: SingleAccuracy
    single_all: SingleAccuracy
    two_seen: TwoAccuracy
    two_heldout: TwoAccuracy
    two_all: TwoAccuracy
    seconds_per_image: float


@dataclass(frozen=True)
class TemplateResult:
    """The same prompts worded with training templates and with held-out ones."""

    seen_single: SingleAccuracy
    unseen_single: SingleAccuracy
    seen_two: TwoAccuracy
    unseen_two: TwoAccuracy


@dataclass(frozen=True)
class VariationResult:
    """Variations of generated one-object scenes: does the object keep its attributes?"""

    n: int
    colour: float | None
    shape: float | None
    colour_and_shape: float | None
    size: float | None
    position: float | None


@dataclass(frozen=True)
class EditResult:
    """Edits asking for a new object inside a mask; PSNR of the kept pixels outside it."""

    n: int
    colour_in_mask: float | None
    shape_in_mask: float | None
    both_in_mask: float | None
    psnr_outside_mean: float | None
    psnr_outside_min: float | None


@dataclass(frozen=True)
class RetrievalResult:
    """CLIP text -> image top-1 over real renders of distinct captions."""

    n: int
    top1: float | None
    chance: float | None


@dataclass(frozen=True)
class StepsRow:
    """One sampler setting on the steps subset of one-object prompts."""

    sampler: str
    steps: tuple[int, int, int]  # prior, decoder, upsampler
    accuracy: SingleAccuracy
    seconds_per_image: float


@dataclass(frozen=True)
class TargetCheck:
    """One target of issue 4 and whether this run reaches it."""

    name: str
    target: str
    value: float | None
    met: bool | None


@dataclass(frozen=True)
class ShapeEvalReport:
    """Everything `unclip eval` measured."""

    family: str
    device: str
    settings: dict[str, Any]
    n_prompts: int
    generation: GenerationResult
    variations: VariationResult
    edits: EditResult
    retrieval: RetrievalResult
    steps: list[StepsRow]
    wall_seconds: float
    targets: list[TargetCheck] = field(default_factory=list)
    templates: TemplateResult | None = None  # None: the template section was not run


def _at_least(name: str, value: float | None, goal: float, unit: str = "") -> TargetCheck:
    text = f">= {goal:g}{unit}" if unit else f">= {goal:.0%}"
    return TargetCheck(name, text, value, None if value is None else value >= goal)


def _gap(seen: float | None, heldout: float | None) -> TargetCheck:
    gap = None if seen is None or heldout is None else seen - heldout
    return TargetCheck(
        "single held-out within 10 points of seen (all attributes)",
        "gap <= 0.10",
        gap,
        None if gap is None else gap <= 0.10,
    )


def _unseen_template_targets(templates: TemplateResult | None) -> list[TargetCheck]:
    """Issue 12: the one-object targets hold on held-out caption templates too."""
    if templates is None:
        return []
    acc = templates.unseen_single
    goals = {"colour": 0.95, "shape": 0.90, "position": 0.90, "size": 0.85}
    return [
        _at_least(f"unseen templates, single object: {name}", getattr(acc, name), goal)
        for name, goal in goals.items()
    ]


def check_targets(report: ShapeEvalReport) -> list[TargetCheck]:
    """The issue's ShapeEval targets, measured on this report."""
    single, gen = report.generation.single_all, report.generation
    return [*_base_targets(report, single, gen), *_unseen_template_targets(report.templates)]


def _base_targets(
    report: ShapeEvalReport, single: SingleAccuracy, gen: GenerationResult
) -> list[TargetCheck]:
    return [
        _at_least("single object: colour", single.colour, 0.95),
        _at_least("single object: shape", single.shape, 0.90),
        _at_least("single object: position", single.position, 0.90),
        _at_least("single object: size", single.size, 0.85),
        _at_least("two objects: every attribute of both right", gen.two_all.all_right, 0.60),
        _gap(gen.single_seen.all_right, gen.single_heldout.all_right),
        _at_least("variations keep colour", report.variations.colour, 0.90),
        _at_least("variations keep shape", report.variations.shape, 0.90),
        _at_least("edits: requested colour in the mask", report.edits.colour_in_mask, 0.85),
        _at_least(
            "edits: PSNR outside the mask (mean)", report.edits.psnr_outside_mean, 35.0, " dB"
        ),
    ]


def write_report(report: ShapeEvalReport, path: str | Path) -> None:
    """Write `report` as JSON (parent folders created)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dataclasses.asdict(report), indent=2) + "\n")


def _pct(value: float | None) -> str:
    return "  -  " if value is None else f"{value:5.1%}"


def _single_line(label: str, acc: SingleAccuracy) -> str:
    cells = (acc.colour, acc.shape, acc.size, acc.position, acc.all_right)
    return f"{label:<22}{acc.n:>5}  " + "  ".join(_pct(c) for c in cells)


def _generation_lines(gen: GenerationResult) -> list[str]:
    lines = [
        f"{'one object':<22}{'n':>5}  colour  shape   size    place   all",
        _single_line("  seen", gen.single_seen),
        _single_line("  held-out", gen.single_heldout),
        _single_line("  all", gen.single_all),
        f"{'two objects':<22}{'n':>5}  all     pair    relation",
    ]
    for label, two in (
        ("  seen", gen.two_seen),
        ("  held-out", gen.two_heldout),
        ("  all", gen.two_all),
    ):
        cells = (two.all_right, two.both_present, two.relation)
        lines.append(f"{label:<22}{two.n:>5}  " + "  ".join(_pct(c) for c in cells))
    return lines


def _steps_lines(rows: list[StepsRow]) -> list[str]:
    lines = [f"{'sampler':<10}{'steps':<14}{'n':>4}  colour  shape   size    place   all     s/img"]
    for row in rows:
        acc = row.accuracy
        cells = (acc.colour, acc.shape, acc.size, acc.position, acc.all_right)
        lines.append(
            f"{row.sampler:<10}{str(list(row.steps)):<14}{acc.n:>4}  "
            + "  ".join(_pct(c) for c in cells)
            + f"  {row.seconds_per_image:6.2f}"
        )
    return lines


def template_lines(templates: TemplateResult | None) -> list[str]:
    """The caption-template section as table lines (none when it was not run)."""
    if templates is None:
        return []
    lines = [f"{'templates, one object':<22}{'n':>5}  colour  shape   size    place   all"]
    for label, acc in (("  seen", templates.seen_single), ("  unseen", templates.unseen_single)):
        lines.append(_single_line(label, acc))
    lines.append(f"{'templates, two objects':<22}{'n':>5}  all     pair    relation")
    for label, two in (("  seen", templates.seen_two), ("  unseen", templates.unseen_two)):
        cells = (two.all_right, two.both_present, two.relation)
        lines.append(f"{label:<22}{two.n:>5}  " + "  ".join(_pct(c) for c in cells))
    return lines


def format_table(report: ShapeEvalReport) -> str:
    """The report as a text table for the terminal."""
    var, edit, ret = report.variations, report.edits, report.retrieval
    lines = [
        f"ShapeEval: {report.family} on {report.device}, {report.n_prompts} prompts, "
        f"{report.wall_seconds:.0f} s; settings {report.settings}",
        *_generation_lines(report.generation),
        *template_lines(report.templates),
        f"variations (n={var.n}): colour {_pct(var.colour)}, shape {_pct(var.shape)}, "
        f"both {_pct(var.colour_and_shape)}",
        f"edits (n={edit.n}): colour in mask {_pct(edit.colour_in_mask)}, shape in mask "
        f"{_pct(edit.shape_in_mask)}, PSNR outside {edit.psnr_outside_mean} dB (mean)",
        f"CLIP text->image top-1 (n={ret.n}): {_pct(ret.top1)} (chance {_pct(ret.chance)})",
        f"generation: {report.generation.seconds_per_image:.2f} s/image",
        *_steps_lines(report.steps),
        "targets:",
    ]
    for check in report.targets:
        mark = {True: "met", False: "NOT met", None: "n/a"}[check.met]
        value = "-" if check.value is None else f"{check.value:.3g}"
        lines.append(f"  {check.name}: {value} ({check.target}) {mark}")
    return "\n".join(lines)
