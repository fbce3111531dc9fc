"""Prior stage: CLIP image embeddings for a batch of requests (prompt -> prior, or input image)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor

from worker.unclip.batch_invariance import batch_invariance
from worker.unclip.clip_encoder import TextEncoding
from worker.unclip.diffusion import get_sampler, randn_rows
from worker.unclip.embedding_mix import mix_embeddings
from worker.unclip.family import Family
from worker.unclip.guidance import (
    NetFn,
    concat_encodings,
    encode_prompts_with_null,
    guided_model_fn,
)
from worker.unclip.nets import denormalise_image_emb
from worker.unclip.nets.prior_cache import PrefixCache, encode_prefix, predict_with_prefix
from worker.unclip.render_spec import (
    ProgressCallback,
    RenderSpec,
    Stage,
    StepCounter,
    run_grouped,
    with_mode,
)
from worker.unclip.seeds import make_generator

STAGE: Stage = "prior"


@torch.inference_mode()
def run_prior(
    family: Family, specs: Sequence[RenderSpec], *, callback: ProgressCallback | None = None
) -> list[Tensor]:
    """Per spec, (n, D) float32 CPU CLIP image embeddings (un-normalised, as CLIP gives them).

    generate/edit: sampled by the prior from the prompt (best of k candidates, guidance on
    the text only); variation: the CLIP image embedding of spec.image (or the given
    spec.image_embedding), repeated n times; mix: each entry's embedding (prompts sampled by
    the prior, per image), spherically mixed by weight (embedding_mix.py).
    Specs sharing prior steps, sampler and mode go through one sampler call; reproducible
    specs run batch-invariantly (batch_invariance.py).
    """
    return _run_prior(family, with_mode(specs, family.reproducible), callback)


def mix_part_seed(seed: int, part: int) -> int:
    """The seed of a mix's prompt entry `part`: its own, so entries differ, yet reproducible."""
    return (seed * 1_000_003 + part + 1) % 2**32


def _fixed_embedding(
    family: Family, spec: RenderSpec, image: PIL.Image.Image | None, embedding: object
) -> Tensor:
    """(n, D): an image's CLIP embedding, or a given (D,) one, repeated spec.n times."""
    n = spec.n
    if embedding is not None:
        emb = torch.as_tensor(embedding, dtype=torch.float32).reshape(1, -1)
    else:
        assert image is not None  # RenderSpec and MixPart check one of them is given
        with batch_invariance(bool(spec.reproducible)):
            emb = family.clip.encode_image([image]).to("cpu", torch.float32)
    return emb.expand(n, -1).clone()


def _run_prior(
    family: Family, specs: Sequence[RenderSpec], callback: ProgressCallback | None
) -> list[Tensor]:
    out: dict[int, Tensor] = {}
    parts: dict[tuple[int, int], Tensor] = {}
    sampled: list[tuple[int, int | None, RenderSpec]] = []  # (spec, mix entry, what to sample)
    for i, spec in enumerate(specs):
        if spec.kind == "variation":
            out[i] = _fixed_embedding(family, spec, spec.image, spec.image_embedding)
        elif spec.kind == "mix":
            for j, part in enumerate(spec.mix):
                if part.prompt is None:
                    parts[i, j] = _fixed_embedding(family, spec, part.image, part.embedding)
                else:
                    sampled.append(
                        (
                            i,
                            j,
                            replace(
                                spec,
                                kind="generate",
                                prompt=part.prompt,
                                seed=mix_part_seed(spec.seed, j),
                                mix=(),
                            ),
                        )
                    )
        else:
            sampled.append((i, None, spec))
    chosen = run_grouped(
        [request for _, _, request in sampled],
        [None] * len(sampled),
        STAGE,
        callback,
        lambda group, _, steps, sampler, counter: _sample_group(
            family, group, steps, sampler, counter
        ),
    )
    for (i, entry, _), emb in zip(sampled, chosen, strict=True):
        if entry is None:
            out[i] = emb
        else:
            parts[i, entry] = emb
    for i, spec in enumerate(specs):
        if spec.kind == "mix":
            embs = [parts[i, j] for j in range(len(spec.mix))]
            out[i] = mix_embeddings(embs, [part.weight for part in spec.mix])
    return [out[i] for i in range(len(specs))]


def _sample_group(
    family: Family, specs: Sequence[RenderSpec], steps: int, sampler: str, counter: StepCounter
) -> list[Tensor]:
    """One sampler call over every candidate of every image of `specs` (one mode)."""
    with batch_invariance(bool(specs[0].reproducible)):
        return _sample_candidates(family, specs, steps, sampler, counter)


def _sample_candidates(
    family: Family, specs: Sequence[RenderSpec], steps: int, sampler: str, counter: StepCounter
) -> list[Tensor]:
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
    """net_fn for guided_model_fn: cond rows use the prompt, uncond rows the empty prompt.

    Each half's text prefix is encoded on its first call and reused at every step
    (nets/prior_cache.py: exact, the text positions never see the step's).
    """
    both = concat_encodings(cond, null)
    texts = {"cond": cond, "both": both}
    prefixes: dict[str, PrefixCache] = {}  # per half: the text positions, encoded once

    def net_fn(x: Tensor, t: Tensor, half: str) -> Tensor:
        if half not in prefixes:
            text = texts[half]
            prefixes[half] = encode_prefix(
                family.prior,
                text_emb=text.pooled,
                text_tokens=text.tokens,
                text_mask=text.mask,
                text_ids=text.text_ids,
            )
        return predict_with_prefix(family.prior, x, t, prefixes[half])

    return net_fn
