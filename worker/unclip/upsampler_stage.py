"""Upsampler stage: the upsampler chain (32 -> 64 [-> 256]) on the decoder's images, pasting an
edit's known pixels exactly at every size."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor

from worker.unclip import frozen_graphs
from worker.unclip.batch_invariance import batch_invariance
from worker.unclip.diffusion import GaussianDiffusion, Inpaint, ModelFn, get_sampler, randn_rows
from worker.unclip.family import Family
from worker.unclip.images import edit_repaint_mask, image_to_tensor
from worker.unclip.nets import UpsamplerPair, resize_low_res
from worker.unclip.render_spec import (
    ProgressCallback,
    RenderSpec,
    Stage,
    StepCounter,
    StepProgress,
    run_grouped,
    sampler_groups,
    with_mode,
)
from worker.unclip.seeds import make_generator

STAGE: Stage = "upsampler"


@torch.inference_mode()
def run_upsampler(
    family: Family,
    specs: Sequence[RenderSpec],
    low_res: Sequence[Tensor],
    *,
    callback: ProgressCallback | None = None,
) -> list[Tensor]:
    """Per spec, (n, 3, S, S) float32 CPU images in [-1, 1], S = family.output_side(spec.size).

    Each upsampler of the chain runs on the one before's output, up to S (DALL-E 2's
    cascade). Conditioned on the bicubic-resized low-res image, no guidance; the last step
    uses the separate last-step network when the upsampler has one. For an edit every pixel
    outside the mask is exactly the given image's (resized to each size).
    """
    if len(low_res) != len(specs):
        raise ValueError(f"got {len(low_res)} low-res batches for {len(specs)} specs")
    s = family.decoder_size
    for spec, images in zip(specs, low_res, strict=True):
        if tuple(images.shape) != (spec.n, 3, s, s):
            raise ValueError(f"low-res shape {tuple(images.shape)} must be {(spec.n, 3, s, s)}")
    specs = with_mode(specs, family.reproducible)
    passes = [
        [i for i, spec in enumerate(specs) if family.output_side(spec.size) >= pair.cfg.image_size]
        for pair in family.upsamplers
    ]
    totals = [sum(_pass_steps(family, pair, st) for st, _, _ in
                  sampler_groups([specs[i] for i in rows], STAGE))
              for pair, rows in zip(family.upsamplers, passes, strict=True)]  # fmt: skip
    out = list(low_res)
    for k, (pair, rows) in enumerate(zip(family.upsamplers, passes, strict=True)):
        if not rows:
            break
        results = run_grouped([specs[i] for i in rows], [out[i] for i in rows], STAGE,
                              _offset(callback, sum(totals[:k]), sum(totals)),
                              partial(_sample_group, family, pair))  # fmt: skip
        for i, images in zip(rows, results, strict=True):
            out[i] = images
    return out


def _pass_steps(family: Family, pair: UpsamplerPair, steps: int) -> int:
    """A pass's step count: the request's for the first upsampler, else the family's
    defaults.cascade_steps for that upsampler when it names one."""
    return family.defaults.cascade_steps.get(family.upsampler_stage_name(pair), steps)


def _offset(callback: ProgressCallback | None, done: int, total: int) -> ProgressCallback | None:
    """A pass's progress counted over the whole chain: one bar for the stage."""
    if callback is None:
        return None
    report = callback

    def shifted(p: StepProgress) -> None:
        report(StepProgress(stage=p.stage, step=done + p.step, total=total))

    return shifted


def final_known_pixels(spec: RenderSpec, size: int) -> tuple[Tensor, Tensor]:
    """(known (3, S, S), keep (1, S, S) float) at the final size; keep = 0 unless an edit."""
    if spec.kind != "edit":
        return torch.zeros(3, size, size), torch.zeros(1, size, size)
    assert spec.image is not None  # RenderSpec checks it
    repaint = edit_repaint_mask(spec.image, spec.mask, size)
    return image_to_tensor(spec.image, size), (~repaint).to(torch.float32)


def _sample_group(
    family: Family,
    pair: UpsamplerPair,
    specs: Sequence[RenderSpec],
    low_res: Sequence[Tensor],
    steps: int,
    sampler: str,
    counter: StepCounter,
) -> list[Tensor]:
    """One sampler call over every image of `specs` (one mode), then the exact paste."""
    steps = _pass_steps(family, pair, steps)
    with batch_invariance(bool(specs[0].reproducible)):
        return _sample_images(family, pair, specs, low_res, steps, sampler, counter)


def _sample_images(
    family: Family,
    pair: UpsamplerPair,
    specs: Sequence[RenderSpec],
    low_res: Sequence[Tensor],
    steps: int,
    sampler: str,
    counter: StepCounter,
) -> list[Tensor]:
    size, device = pair.cfg.image_size, family.device
    stage = family.upsampler_stage_name(pair)  # "upsampler" for the first: its seeds as before
    rows = [(s, i) for s in range(len(specs)) for i in range(specs[s].n)]
    known_keep = [final_known_pixels(spec, size) for spec in specs]
    known = torch.stack([known_keep[s][0] for s, _ in rows])  # (R, 3, S, S)
    keep = torch.stack([known_keep[s][1] for s, _ in rows])  # (R, 1, S, S)
    generators = [make_generator(specs[s].seed, stage, i, "cpu") for s, i in rows]
    x = randn_rows((len(rows), 3, size, size), generators, device, torch.float32)
    cond = resize_low_res(torch.cat(list(low_res)).to(device).clamp(-1.0, 1.0), size)
    diffusion = family.diffusion(stage, steps, sampler)
    # Every row gets forcing (keep = 0 changes nothing) so that the noise each row draws
    # does not depend on whether an edit shares its batch.
    images = get_sampler(sampler)(
        _upsampler_model_fn(family, pair, cond, diffusion),
        x,
        diffusion,
        generators=generators,
        callback=counter.sampler_callback(),
        clip_x0=pair.cfg.diffusion.clamp_x0,
        inpaint=Inpaint(known=known.to(device), keep=keep.to(device)),
    )
    images = images.clamp(-1.0, 1.0).to("cpu", torch.float32)
    images = torch.where(keep > 0.5, known, images)  # the given pixels, exactly
    return [t.clone() for t in images.split([spec.n for spec in specs])]


def _upsampler_model_fn(
    family: Family, pair: UpsamplerPair, cond: Tensor, diffusion: GaussianDiffusion
) -> ModelFn:
    """model_fn running the last-step network at the final step, else the first-steps one."""
    calls, graphs = [0], family.graphs  # the samplers call model_fn once per step, in order

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        calls[0] += 1
        net = pair.net_for_step(last=calls[0] == diffusion.num_timesteps)
        # No padding of a lone row to two: batch-invariant mode already runs convolutions
        # and small products at batch-independent sizes, so a doubled row would only
        # double the work (Karlo runs one row too).
        return frozen_graphs.upsample(graphs, net, x, t, cond)

    return model_fn
