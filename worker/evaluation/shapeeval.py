"""ShapeEval end to end: load a family, run every section, check the targets, build the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from shared.console_progress import StepBar
from worker.evaluation.cases import edit_cases, retrieval_captions, variation_cases
from worker.evaluation.prompts import prompt_set, template_pairs
from worker.evaluation.report import ShapeEvalReport, check_targets
from worker.evaluation.retrieval import run_retrieval
from worker.evaluation.samples import save_samples
from worker.evaluation.sections import (
    EvalSettings,
    Render,
    run_edits,
    run_generation,
    run_steps,
    run_templates,
    run_variations,
)
from worker.unclip.family import FamilyDefaults, load_family
from worker.unclip.render import render
from worker.unclip.render_spec import StageSteps

FULL_SIZES = {"variations": 40, "edits": 40, "retrieval": 100, "steps": 16, "templates": 60}


@dataclass(frozen=True)
class EvalOptions:
    """What to run: `limit` shrinks every section for a quick check."""

    limit: int | None = None
    device: str = "cpu"
    dtype: str = "float32"  # the networks' dtype: float32, bfloat16 (CPU with AVX512-BF16) ...
    batch_size: int = 16
    ddpm_steps: int = 250
    steps_prompts: int | None = None  # prompts in the sampler-steps section (default 16)
    samples_dir: Path | None = None  # where to save the generated images and readings


def section_sizes(limit: int | None) -> dict[str, int]:
    """How many cases each section gets: the full set, or a share of `limit`."""
    if limit is None:
        return dict(FULL_SIZES)
    if limit < 1:
        raise ValueError(f"limit must be a positive number of prompts, got {limit}")
    return {
        "variations": min(FULL_SIZES["variations"], max(2, limit // 5)),
        "edits": min(FULL_SIZES["edits"], max(2, limit // 5)),
        "retrieval": min(FULL_SIZES["retrieval"], max(8, 2 * limit)),
        "steps": min(FULL_SIZES["steps"], max(2, limit // 10)),
        "templates": min(FULL_SIZES["templates"], max(3, limit // 4)),
    }


def family_settings(defaults: FamilyDefaults, batch_size: int) -> EvalSettings:
    """The family's default sampler settings (family.json "defaults")."""
    return EvalSettings(
        steps=defaults.steps,
        sampler=defaults.sampler,
        prior_guidance=defaults.prior_guidance,
        decoder_guidance=defaults.decoder_guidance,
        batch_size=batch_size,
    )


def step_rows(settings: EvalSettings, ddpm_steps: int) -> list[tuple[str, StageSteps]]:
    """DPM-Solver++ at 5/10/20 prior and decoder steps, DDPM at `ddpm_steps`.

    The upsampler keeps the family's step count in every row (Karlo also runs its upsampler
    with a few DDPM steps); only the sampler changes there.
    """
    upsampler = settings.steps.upsampler
    rows = [("dpmpp_2m", StageSteps(k, k, upsampler)) for k in (5, 10, 20)]
    return [*rows, ("ddpm", StageSteps(ddpm_steps, ddpm_steps, upsampler))]


def _device(name: str) -> torch.device:
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


def _settings_record(settings: EvalSettings, options: EvalOptions) -> dict[str, Any]:
    steps = settings.steps
    return {
        "steps": [steps.prior, steps.decoder, steps.upsampler],
        "sampler": settings.sampler,
        "prior_guidance": settings.prior_guidance,
        "decoder_guidance": settings.decoder_guidance,
        "limit": options.limit,
        "ddpm_steps": options.ddpm_steps,
        "dtype": options.dtype,
    }


def run_shapeeval(
    family_dir: str | Path,
    options: EvalOptions = EvalOptions(),
    log: Callable[[str], None] = print,
) -> ShapeEvalReport:
    """Run every ShapeEval section on the family in `family_dir` and return the report."""
    start = time.perf_counter()
    device = _device(options.device)
    family = load_family(family_dir, device, getattr(torch, options.dtype))
    settings = family_settings(family.defaults, options.batch_size)
    draw: Render = partial(render, family)
    prompts = prompt_set(options.limit)
    sizes = section_sizes(options.limit)
    if options.steps_prompts is not None:
        sizes["steps"] = options.steps_prompts
    single = [p for p in prompts if p.group == "single"][: sizes["steps"]]
    rows = step_rows(settings, options.ddpm_steps)
    pairs = template_pairs(prompts, sizes["templates"])
    total = len(prompts) + sizes["variations"] + sizes["edits"] + len(single) * len(rows)
    total += 2 * len(pairs)
    with StepBar(total, "ShapeEval") as bar:
        log(f"generation: {len(prompts)} prompts")
        generation, images = run_generation(draw, prompts, settings, bar.update)
        if options.samples_dir is not None:
            save_samples(options.samples_dir, prompts, images)
        size = images[0].shape[0]
        log(f"templates: {len(pairs)} prompts, each in a seen and an unseen template")
        templates = run_templates(draw, pairs, settings, bar.update)
        log(f"variations: {sizes['variations']}, edits: {sizes['edits']}")
        cases = variation_cases(sizes["variations"], size)
        variations = run_variations(draw, cases, settings, bar.update)
        edits = run_edits(draw, edit_cases(sizes["edits"], size), settings, bar.update)
        log(f"sampler steps: {len(single)} prompts x {len(rows)} settings")
        steps = run_steps(draw, single, settings, rows, bar.update)
    retrieval = run_retrieval(family.clip, retrieval_captions(sizes["retrieval"]))
    report = ShapeEvalReport(
        family=str(family_dir),
        device=str(device),
        settings=_settings_record(settings, options),
        n_prompts=len(prompts),
        generation=generation,
        variations=variations,
        edits=edits,
        retrieval=retrieval,
        steps=steps,
        wall_seconds=time.perf_counter() - start,
        templates=templates,
    )
    return replace(report, targets=check_targets(report))
