"""Prior stage: CLIP image embeddings for a batch of requests (prompt -> prior, or input image)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from worker.unclip.clip_encoder import TextEncoding
from worker.unclip.diffusion import get_sampler, randn_rows
from worker.unclip.family import Family
from worker.unclip.guidance import (
    NetFn,
    concat_encodings,
    encode_prompts_with_null,
    guided_model_fn,
)
from worker.unclip.nets import denormalise_image_emb
from worker.unclip.render_spec import (
    ProgressCallback,
    RenderSpec,
    Stage,
    StepCounter,
    run_grouped,
)
from worker.unclip.seeds import make_generator, row_stable

STAGE: Stage = "prior"


@torch.inference_mode()
def run_prior(
    family: Family, specs: Sequence[RenderSpec], *, callback: ProgressCallback | None = None
) -> list[Tensor]:
    """Per spec, (n, D) float32 CPU CLIP image embeddings (un-normalised, as CLIP gives them).

    generate/edit: sampled by the prior from the prompt (best of k candidates, guidance on
    the text only); variation: the CLIP image embedding of spec.image, repeated n times.
    Specs sharing prior steps and sampler go through one sampler call.
    """
    with row_stable(family.networks().values()):
        return _run_prior(family, specs, callback)


def _run_prior(
    family: Family, specs: Sequence[RenderSpec], callback: ProgressCallback | None
) -> list[Tensor]:
    out: list[Tensor | None] = [None] * len(specs)
    for i, spec in enumerate(specs):
        if spec.kind == "variation":
            assert spec.image is not None  # RenderSpec checks it
            emb = family.clip.encode_image([spec.image]).to("cpu", torch.float32)
            out[i] = emb.expand(spec.n, -1).clone()
    prompted = [i for i, spec in enumerate(specs) if spec.kind != "variation"]
    chosen = run_grouped(
        [specs[i] for i in prompted],
        [None] * len(prompted),
        STAGE,
        callback,
        lambda group, _, steps, sampler, counter: _sample_group(
            family, group, steps, sampler, counter
        ),
    )
    for i, emb in zip(prompted, chosen, strict=True):
        out[i] = emb
    return [emb for emb in out if emb is not None]


def _sample_group(
    family: Family, specs: Sequence[RenderSpec], steps: int, sampler: str, counter: StepCounter
) -> list[Tensor]:
    """One sampler call over every candidate of every image of `specs`."""
    k = family.defaults.prior_candidates
    rows = [(s, i, c) for s in range(len(specs)) for i in range(specs[s].n) for c in range(k)]
    prompts = [specs[s].prompt for s, _, _ in rows]
    cond, null = encode_prompts_with_null(family.clip, prompts)
    scales = torch.tensor([specs[s].prior_guidance for s, _, _ in rows])
    generators = [make_generator(specs[s].seed, STAGE, i, "cpu", candidate=c) for s, i, c in rows]
    dim = family.prior_config.clip_dim
    x = randn_rows((len(rows), dim), generators, family.device, torch.float32)
    model_fn = guided_model_fn(_prior_net_fn(family, cond, null), scales, guided_channels=dim)
    z = get_sampler(sampler)(
        model_fn,
        x,
        family.diffusion(STAGE, steps, sampler),
        generators=generators,
        callback=counter.sampler_callback(),
        clip_x0=family.prior_config.diffusion.clamp_x0,
    )
    emb = denormalise_image_emb(z.float(), family.prior_mean, family.prior_std)  # (R, D)
    score = F.cosine_similarity(emb, cond.pooled.float(), dim=-1).reshape(-1, k)
    best = emb.reshape(-1, k, dim)[torch.arange(score.shape[0]), score.argmax(dim=1)]
    per_spec = best.to("cpu").split([spec.n for spec in specs])
    return [t.clone() for t in per_spec]


def _prior_net_fn(family: Family, cond: TextEncoding, null: TextEncoding) -> NetFn:
    """net_fn for guided_model_fn: cond rows use the prompt, uncond rows the empty prompt."""
    both = concat_encodings(cond, null)
    texts = {"cond": cond, "both": both}

    def net_fn(x: Tensor, t: Tensor, half: str) -> Tensor:
        text = texts[half]
        return family.prior(
            x, t, text_emb=text.pooled, text_tokens=text.tokens, text_mask=text.mask
        )

    return net_fn
