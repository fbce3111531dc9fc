"""The whole pipeline in one process: prior -> decoder -> upsampler, and embedding interpolation."""

from __future__ import annotations

from collections.abc import Sequence

import PIL.Image
import torch
from torch import Tensor

from worker.unclip.batch_invariance import batch_invariance
from worker.unclip.decoder_stage import run_decoder
from worker.unclip.family import Family
from worker.unclip.images import to_pil_images
from worker.unclip.prior_stage import run_prior
from worker.unclip.render_spec import ProgressCallback, RenderSpec, StageSteps
from worker.unclip.upsampler_stage import run_upsampler


def render(
    family: Family, specs: Sequence[RenderSpec], *, callback: ProgressCallback | None = None
) -> list[list[PIL.Image.Image]]:
    """Per spec, its n images at the family's final size; every stage batches all specs."""
    if not specs:
        return []
    image_embs = run_prior(family, specs, callback=callback)
    low_res = run_decoder(family, specs, image_embs, callback=callback)
    final = run_upsampler(family, specs, low_res, callback=callback)
    return [to_pil_images(images) for images in final]


def slerp(a: Tensor, b: Tensor, weight: float) -> Tensor:
    """Spherical interpolation of directions, linear of norms: a at weight 0, b at weight 1."""
    if weight == 0.0:
        return a.clone()
    if weight == 1.0:
        return b.clone()
    a64, b64 = a.double(), b.double()
    na, nb = a64.norm(), b64.norm()
    ua, ub = a64 / na, b64 / nb
    theta = torch.arccos(torch.dot(ua, ub).clamp(-1.0, 1.0))
    if float(theta) < 1e-6:  # (nearly) parallel: the arc is a line
        direction = (1.0 - weight) * ua + weight * ub
    else:
        sin = torch.sin(theta)
        direction = (
            torch.sin((1.0 - weight) * theta) / sin * ua + torch.sin(weight * theta) / sin * ub
        )
    return (direction * ((1.0 - weight) * na + weight * nb)).to(a.dtype)


def interpolate(
    family: Family,
    image_a: PIL.Image.Image,
    image_b: PIL.Image.Image,
    weights: Sequence[float],
    *,
    seed: int,
    prompt: str = "",
    steps: StageSteps | None = None,
    sampler: str | None = None,
    decoder_guidance: float | None = None,
    reproducible: bool | None = None,
    callback: ProgressCallback | None = None,
) -> list[PIL.Image.Image]:
    """One image per weight, decoded from slerp(CLIP(image_a), CLIP(image_b), weight).

    reproducible: as RenderSpec's (None: the family's mode).
    """
    if not weights:
        raise ValueError("interpolate needs at least one weight, got none")
    for w in weights:
        if not 0.0 <= w <= 1.0:
            raise ValueError(f"interpolation weights must be in [0, 1], got {w!r}")
    defaults = family.defaults
    spec = RenderSpec(
        kind="variation",
        prompt=prompt,
        n=len(weights),
        seed=seed,
        steps=steps or defaults.steps,
        sampler=sampler or defaults.sampler,
        decoder_guidance=defaults.decoder_guidance
        if decoder_guidance is None
        else decoder_guidance,
        image=image_a,
        reproducible=family.reproducible if reproducible is None else reproducible,
    )
    with torch.inference_mode(), batch_invariance(bool(spec.reproducible)):
        ends = family.clip.encode_image([image_a, image_b]).to("cpu", torch.float32)
    embs = torch.stack([slerp(ends[0], ends[1], w) for w in weights])  # (n, D)
    low_res = run_decoder(family, [spec], [embs], callback=callback)
    final = run_upsampler(family, [spec], low_res, callback=callback)
    return to_pil_images(final[0])
