"""Upsampler stage: final-size images from the decoder's, pasting an edit's known pixels exactly."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor

from worker.unclip.diffusion import GaussianDiffusion, Inpaint, ModelFn, get_sampler, randn_rows
from worker.unclip.family import Family
from worker.unclip.images import edit_repaint_mask, image_to_tensor
from worker.unclip.nets import UpsamplerPair, resize_low_res
from worker.unclip.render_spec import (
    ProgressCallback,
    RenderSpec,
    Stage,
    StepCounter,
    run_grouped,
)
from worker.unclip.seeds import make_generator, row_stable

STAGE: Stage = "upsampler"


@torch.inference_mode()
def run_upsampler(
    family: Family,
    specs: Sequence[RenderSpec],
    low_res: Sequence[Tensor],
    *,
    callback: ProgressCallback | None = None,
) -> list[Tensor]:
    """Per spec, (n, 3, S, S) float32 CPU images in [-1, 1], S = the family's final size.

    Conditioned on the bicubic-resized low-res image, no guidance; the last step uses the
    separate last-step network when the family has one. For an edit every pixel outside
    the mask is exactly the given image's (resized to S).
    """
    if len(low_res) != len(specs):
        raise ValueError(f"got {len(low_res)} low-res batches for {len(specs)} specs")
    s = family.decoder_size
    for spec, images in zip(specs, low_res, strict=True):
        if tuple(images.shape) != (spec.n, 3, s, s):
            raise ValueError(f"low-res shape {tuple(images.shape)} must be {(spec.n, 3, s, s)}")
    with row_stable(family.networks().values()):
        return run_grouped(specs, low_res, STAGE, callback, partial(_sample_group, family))


def final_known_pixels(spec: RenderSpec, size: int) -> tuple[Tensor, Tensor]:
    """(known (3, S, S), keep (1, S, S) float) at the final size; keep = 0 unless an edit."""
    if spec.kind != "edit":
        return torch.zeros(3, size, size), torch.zeros(1, size, size)
    assert spec.image is not None  # RenderSpec checks it
    repaint = edit_repaint_mask(spec.image, spec.mask, size)
    return image_to_tensor(spec.image, size), (~repaint).to(torch.float32)


def _sample_group(
    family: Family,
    specs: Sequence[RenderSpec],
    low_res: Sequence[Tensor],
    steps: int,
    sampler: str,
    counter: StepCounter,
) -> list[Tensor]:
    """One sampler call over every image of `specs`, then the exact paste for edits."""
    size, device = family.final_size, family.device
    rows = [(s, i) for s in range(len(specs)) for i in range(specs[s].n)]
    known_keep = [final_known_pixels(spec, size) for spec in specs]
    known = torch.stack([known_keep[s][0] for s, _ in rows])  # (R, 3, S, S)
    keep = torch.stack([known_keep[s][1] for s, _ in rows])  # (R, 1, S, S)
    generators = [make_generator(specs[s].seed, STAGE, i, "cpu") for s, i in rows]
    x = randn_rows((len(rows), 3, size, size), generators, device, torch.float32)
    cond = resize_low_res(torch.cat(list(low_res)).to(device).clamp(-1.0, 1.0), size)
    diffusion = family.diffusion(STAGE, steps, sampler)
    # Every row gets forcing (keep = 0 changes nothing) so that the noise each row draws
    # does not depend on whether an edit shares its batch.
    images = get_sampler(sampler)(
        _upsampler_model_fn(family.upsampler, cond, diffusion),
        x,
        diffusion,
        generators=generators,
        callback=counter.sampler_callback(),
        clip_x0=family.upsampler_config.diffusion.clamp_x0,
        inpaint=Inpaint(known=known.to(device), keep=keep.to(device)),
    )
    images = images.clamp(-1.0, 1.0).to("cpu", torch.float32)
    images = torch.where(keep > 0.5, known, images)  # the given pixels, exactly
    return [t.clone() for t in images.split([spec.n for spec in specs])]


def _upsampler_model_fn(pair: UpsamplerPair, cond: Tensor, diffusion: GaussianDiffusion) -> ModelFn:
    """model_fn running the last-step network at the final step, else the first-steps one."""
    calls = [0]  # the samplers call model_fn once per step, first to last

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        calls[0] += 1
        net = pair.net_for_step(last=calls[0] == diffusion.num_timesteps)
        # No padding of a lone row to two: row_stable already runs its convolutions and
        # small products at batch-independent sizes, so a doubled row would only double
        # the work (Karlo runs one row too).
        return net(x, t, low_res=cond)

    return model_fn
