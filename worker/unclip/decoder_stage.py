"""Decoder stage: 64 px-class images from CLIP image embeddings, with guidance and inpainting."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor

from worker.unclip import frozen_graphs
from worker.unclip.batch_invariance import batch_invariance
from worker.unclip.diffusion import Inpaint, get_sampler, randn_rows
from worker.unclip.family import Family
from worker.unclip.guidance import NetFn, encode_prompts_with_null, guided_model_fn
from worker.unclip.images import edit_repaint_mask, image_to_tensor, keep_at
from worker.unclip.nets import DecoderContext
from worker.unclip.render_spec import (
    ProgressCallback,
    RenderSpec,
    Stage,
    StepCounter,
    run_grouped,
    with_mode,
)
from worker.unclip.seeds import make_generator

STAGE: Stage = "decoder"
# Guided batches are [cond; uncond] pairs, so in batch-invariant mode convolving in pairs up
# to 64 x 64 maps pads nothing and saves one call per image (measured ~5% of the stage).
PAIRED_MAP = 64 * 64


@torch.inference_mode()
def run_decoder(
    family: Family,
    specs: Sequence[RenderSpec],
    image_embs: Sequence[Tensor],
    *,
    callback: ProgressCallback | None = None,
) -> list[Tensor]:
    """Per spec, (n, 3, s, s) float32 CPU images in [-1, 1], s = the decoder's size.

    Guidance on eps: cond = image embedding + prompt, uncond = the learned null image
    embedding + the empty prompt, both in one network call. Edits feed [x_t, image * keep,
    keep] to the 7-channel decoder and force the known region while sampling.
    """
    if len(image_embs) != len(specs):
        raise ValueError(f"got {len(image_embs)} image embeddings for {len(specs)} specs")
    for spec, emb in zip(specs, image_embs, strict=True):
        want = (spec.n, family.prior_config.clip_dim)
        if tuple(emb.shape) != want:
            raise ValueError(f"image embedding shape {tuple(emb.shape)} must be {want}")
    specs = with_mode(specs, family.reproducible)
    return run_grouped(specs, image_embs, STAGE, callback, partial(_sample_group, family))


def known_pixels(spec: RenderSpec, size: int, mask_size: int) -> tuple[Tensor, Tensor]:
    """(known (3, size, size) in [-1, 1], keep (1, size, size) float) for one spec's rows.

    Edits know the input image outside the mask; other kinds know nothing (keep = 0). The
    mask is read at `mask_size` (the final size) and a pixel at `size` is known only if all
    it covers is known.
    """
    if spec.kind != "edit":
        return torch.zeros(3, size, size), torch.zeros(1, size, size)
    assert spec.image is not None  # RenderSpec checks it
    repaint = edit_repaint_mask(spec.image, spec.mask, mask_size)
    keep = keep_at(repaint[None], size)[0]
    return image_to_tensor(spec.image, size), keep


def _sample_group(
    family: Family,
    specs: Sequence[RenderSpec],
    image_embs: Sequence[Tensor],
    steps: int,
    sampler: str,
    counter: StepCounter,
) -> list[Tensor]:
    """One sampler call over every image of `specs` (one mode)."""
    with batch_invariance(bool(specs[0].reproducible), small_map=PAIRED_MAP):
        return _sample_images(family, specs, image_embs, steps, sampler, counter)


def _sample_images(
    family: Family,
    specs: Sequence[RenderSpec],
    image_embs: Sequence[Tensor],
    steps: int,
    sampler: str,
    counter: StepCounter,
) -> list[Tensor]:
    size, device = family.decoder_size, family.device
    rows = [(s, i) for s in range(len(specs)) for i in range(specs[s].n)]
    known_keep = [known_pixels(spec, size, family.final_size) for spec in specs]
    known = torch.stack([known_keep[s][0] for s, _ in rows]).to(device)  # (R, 3, s, s)
    keep = torch.stack([known_keep[s][1] for s, _ in rows]).to(device)  # (R, 1, s, s)
    generators = [make_generator(specs[s].seed, STAGE, i, "cpu") for s, i in rows]
    x = randn_rows((len(rows), 3, size, size), generators, device, torch.float32)
    scales = torch.tensor([specs[s].decoder_guidance for s, _ in rows])
    net_fn = _decoder_net_fn(family, specs, torch.cat(list(image_embs)), known * keep, keep)
    model_fn = guided_model_fn(net_fn, scales, guided_channels=3)
    # Every row gets forcing (keep = 0 changes nothing) so that the noise each row draws
    # does not depend on whether an edit shares its batch.
    inpaint = Inpaint(known=known, keep=keep) if family.decoder_config.in_channels == 7 else None
    images = get_sampler(sampler)(
        model_fn,
        x,
        family.diffusion(STAGE, steps, sampler),
        generators=generators,
        callback=counter.sampler_callback(),
        clip_x0=family.decoder_config.diffusion.clamp_x0,
        inpaint=inpaint,
    )
    images = images.clamp(-1.0, 1.0).to("cpu", torch.float32)
    return [t.clone() for t in images.split([spec.n for spec in specs])]


def _decoder_net_fn(
    family: Family, specs: Sequence[RenderSpec], image_emb: Tensor, masked: Tensor, keep: Tensor
) -> NetFn:
    """net_fn for guided_model_fn with each half's context encoded once for all steps."""
    decoder, device, graphs = family.decoder, family.device, family.graphs
    prompts = [spec.prompt for spec in specs for _ in range(spec.n)]
    cond, null = encode_prompts_with_null(family.clip, prompts)
    emb = image_emb.to(device)
    rows = emb.shape[0]
    ones = torch.ones(rows, dtype=torch.bool, device=device)
    contexts: dict[str, DecoderContext] = {}
    extra = {"cond": torch.cat([masked, keep], dim=1)}  # (R, 4, s, s)
    extra["both"] = torch.cat([extra["cond"], extra["cond"]])
    seven = decoder.cfg.in_channels == 7

    def context(half: str) -> DecoderContext:
        if half not in contexts:
            if half == "cond":
                contexts[half] = decoder.encode_context(
                    image_emb=emb,
                    text_emb=cond.pooled,
                    text_tokens=cond.tokens,
                    text_mask=cond.mask,
                )
            else:  # [cond; uncond]: uncond = null image embedding (cf_param) + empty prompt
                contexts[half] = decoder.encode_context(
                    image_emb=torch.cat([emb, emb]),
                    text_emb=torch.cat([cond.pooled, null.pooled]),
                    text_tokens=torch.cat([cond.tokens, null.tokens]),
                    text_mask=torch.cat([cond.mask, null.mask]),
                    keep_image_emb=torch.cat([ones, ~ones]),
                )
        return contexts[half]

    def net_fn(x: Tensor, t: Tensor, half: str) -> Tensor:
        if seven:
            x = torch.cat([x, extra[half].to(x.dtype)], dim=1)
        return frozen_graphs.denoise(graphs, decoder, x, t, context(half))

    return net_fn
