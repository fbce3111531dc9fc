"""ShapeEval's sections: generation, variations, edits and sampler steps, over any renderer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import PIL.Image

from worker.evaluation.cases import EditCase, VariationCase
from worker.evaluation.prompts import EvalPrompt, TemplatePair
from worker.evaluation.report import (
    PSNR_CAP,
    EditResult,
    GenerationResult,
    StepsRow,
    TemplateResult,
    VariationResult,
)
from worker.evaluation.scoring import (
    SingleScore,
    TwoScore,
    score_single,
    score_two,
    summarise_single,
    summarise_two,
)
from worker.shapes.analyser import AnalysedObject, analyse_image
from worker.unclip.render_spec import RenderSpec, StageSteps

Render = Callable[[Sequence[RenderSpec]], list[list[PIL.Image.Image]]]
Progress = Callable[[int], None]  # called with the number of images just finished
T = TypeVar("T")


@dataclass(frozen=True)
class EvalSettings:
    """Sampler settings for every request, and how many requests to render at once."""

    steps: StageSteps
    sampler: str
    prior_guidance: float
    decoder_guidance: float
    batch_size: int = 16


def _spec(settings: EvalSettings, **fields: object) -> RenderSpec:
    return RenderSpec(
        n=1,
        steps=settings.steps,
        sampler=settings.sampler,
        prior_guidance=settings.prior_guidance,
        decoder_guidance=settings.decoder_guidance,
        **fields,  # type: ignore[arg-type]
    )


def generate_specs(prompts: Sequence[EvalPrompt], settings: EvalSettings) -> list[RenderSpec]:
    """One text-to-image request per prompt, seeded by the prompt's index."""
    return [_spec(settings, kind="generate", prompt=p.text, seed=p.index) for p in prompts]


def render_all(
    render: Render, specs: Sequence[RenderSpec], batch_size: int, progress: Progress | None
) -> tuple[list[np.ndarray], float]:
    """(images as (S, S, 3) uint8, seconds per image): one image per spec, in batches."""
    images: list[np.ndarray] = []
    start = time.perf_counter()
    for i in range(0, len(specs), batch_size):
        chunk = specs[i : i + batch_size]
        for outputs in render(chunk):
            images.append(np.asarray(outputs[0].convert("RGB")))
        if progress is not None:
            progress(len(chunk))
    return images, (time.perf_counter() - start) / max(1, len(specs))


def _of(scored: list[tuple[EvalPrompt, T]], split: str | None) -> list[T]:
    return [score for prompt, score in scored if split is None or prompt.split == split]


def run_generation(
    render: Render,
    prompts: Sequence[EvalPrompt],
    settings: EvalSettings,
    progress: Progress | None = None,
) -> tuple[GenerationResult, list[np.ndarray]]:
    """Render every prompt (seed = its index) and score it; also return the images."""
    images, seconds = render_all(
        render, generate_specs(prompts, settings), settings.batch_size, progress
    )
    single: list[tuple[EvalPrompt, SingleScore]] = []
    two: list[tuple[EvalPrompt, TwoScore]] = []
    for prompt, image in zip(prompts, images, strict=True):
        scene = analyse_image(image)
        if prompt.group == "single":
            single.append((prompt, score_single(prompt.facts, scene)))
        else:
            two.append((prompt, score_two(prompt.facts, scene)))
    result = GenerationResult(
        single_seen=summarise_single(_of(single, "seen")),
        single_heldout=summarise_single(_of(single, "heldout")),
        single_all=summarise_single(_of(single, None)),
        two_seen=summarise_two(_of(two, "seen")),
        two_heldout=summarise_two(_of(two, "heldout")),
        two_all=summarise_two(_of(two, None)),
        seconds_per_image=seconds,
    )
    return result, images


def run_templates(
    render: Render,
    pairs: Sequence[TemplatePair],
    settings: EvalSettings,
    progress: Progress | None = None,
) -> TemplateResult:
    """Render each pair's seen-template and unseen-template prompt (same seed) and score both."""
    seen, _ = run_generation(render, [p.seen for p in pairs], settings, progress)
    unseen, _ = run_generation(render, [p.unseen for p in pairs], settings, progress)
    return TemplateResult(seen.single_all, unseen.single_all, seen.two_all, unseen.two_all)


def _mean(values: list[bool]) -> float | None:
    return None if not values else sum(values) / len(values)


def run_variations(
    render: Render,
    cases: Sequence[VariationCase],
    settings: EvalSettings,
    progress: Progress | None = None,
) -> VariationResult:
    """Vary each case's render; score whether the largest object keeps its attributes."""
    specs = [
        _spec(
            settings,
            kind="variation",
            prompt="",
            seed=10_000 + i,
            image=PIL.Image.fromarray(case.image),
        )
        for i, case in enumerate(cases)
    ]
    images, _ = render_all(render, specs, settings.batch_size, progress)
    kept: dict[str, list[bool]] = {"colour": [], "shape": [], "size": [], "position": []}
    for case, image in zip(cases, images, strict=True):
        found = analyse_image(image).objects
        source = case.scene.objects[0]
        for name, values in kept.items():
            values.append(bool(found) and getattr(found[0], name) == getattr(source, name))
    both = [c and s for c, s in zip(kept["colour"], kept["shape"], strict=True)]
    return VariationResult(
        len(cases),
        _mean(kept["colour"]),
        _mean(kept["shape"]),
        _mean(both),
        _mean(kept["size"]),
        _mean(kept["position"]),
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over the given pixels, capped at PSNR_CAP."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * np.log10(255.0**2 / mse))


def _object_in_mask(image: np.ndarray, mask: np.ndarray) -> AnalysedObject | None:
    size = image.shape[0]
    for obj in analyse_image(image).objects:  # largest first
        if mask[min(size - 1, int(obj.cy * size)), min(size - 1, int(obj.cx * size))]:
            return obj
    return None


def run_edits(
    render: Render,
    cases: Sequence[EditCase],
    settings: EvalSettings,
    progress: Progress | None = None,
) -> EditResult:
    """Edit each case; score the object inside the mask and the PSNR outside it."""
    specs = [
        _spec(
            settings,
            kind="edit",
            prompt=case.prompt,
            seed=20_000 + i,
            image=PIL.Image.fromarray(case.image),
            mask=PIL.Image.fromarray(case.mask.astype(np.uint8) * 255, mode="L"),
        )
        for i, case in enumerate(cases)
    ]
    images, _ = render_all(render, specs, settings.batch_size, progress)
    colour, shape, psnrs = [], [], []
    for case, image in zip(cases, images, strict=True):
        if image.shape != case.image.shape:
            raise ValueError(f"edit came back {image.shape}, input was {case.image.shape}")
        found = _object_in_mask(image, case.mask)
        colour.append(found is not None and found.colour == case.colour)
        shape.append(found is not None and found.shape == case.shape)
        psnrs.append(psnr(image[~case.mask], case.image[~case.mask]))
    both = [c and s for c, s in zip(colour, shape, strict=True)]
    return EditResult(
        len(cases),
        _mean(colour),
        _mean(shape),
        _mean(both),
        float(np.mean(psnrs)) if psnrs else None,
        float(np.min(psnrs)) if psnrs else None,
    )


def run_steps(
    render: Render,
    prompts: Sequence[EvalPrompt],
    settings: EvalSettings,
    rows: Sequence[tuple[str, StageSteps]],
    progress: Progress | None = None,
) -> list[StepsRow]:
    """Score one-object `prompts` once per (sampler, steps) row."""
    results = []
    for sampler, steps in rows:
        row_settings = replace(settings, sampler=sampler, steps=steps)
        specs = generate_specs(prompts, row_settings)
        images, seconds = render_all(render, specs, settings.batch_size, progress)
        scores = [
            score_single(p.facts, analyse_image(im)) for p, im in zip(prompts, images, strict=True)
        ]
        results.append(
            StepsRow(
                sampler,
                (steps.prior, steps.decoder, steps.upsampler),
                summarise_single(scores),
                seconds,
            )
        )
    return results
