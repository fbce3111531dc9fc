"""Binding probes of the prior, the decoder and the upsampler of a family, stage by stage.

- Prior: sample an embedding for a two-object caption and read its colours with the CLIP's
  bound-colour probe (binding_clip.py): right, swapped, or neither; and whether the sample is
  closer to the render of the caption's scene than to the render of its colour-swapped twin.
- Decoder from the *true* CLIP image embedding of a render, with its caption: two objects
  all right (ShapeEval's scoring, read by the analyser from the image alone).
- Small shapes at each stage: one small object decoded from the true embedding and from a
  prior sample, read at the decoder's size and after the upsampler(s).
Every sampler setting is the family's default (family.json "defaults").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from worker.evaluation.binding_clip import (
    BoundColourProbe,
    ProbeScene,
    image_embeddings,
    reading_order,
)
from worker.evaluation.scoring import score_single, score_two
from worker.shapes.analyser import analyse_image
from worker.shapes.captions import CaptionFacts, ObjectFacts, write_caption
from worker.shapes.rendering import render_batch
from worker.shapes.scenes import SEEN_PAIRS, Scene, place_object
from worker.shapes.vocabulary import BACKGROUNDS, visible_on
from worker.training.data import clip_pixels
from worker.unclip.decoder_stage import run_decoder
from worker.unclip.family import Family
from worker.unclip.prior_stage import run_prior
from worker.unclip.render_spec import RenderSpec
from worker.unclip.upsampler_stage import run_upsampler

SMALL_SEED = 20_261_202
CHUNK = 16  # requests per sampler call


@dataclass(frozen=True)
class PriorProbeResult:
    n: int
    bound_right: float  # the probe reads the caption's colours in the caption's order
    bound_swapped: float  # ... in the swapped order
    prefers_true_render: float  # sample closer to the scene's render than to its colour twin


@dataclass(frozen=True)
class DecoderProbeResult:
    """Two-object scenes decoded from their true CLIP image embedding and caption."""

    n: int
    all_right_final: float  # after the upsampler(s), at the family's final size
    both_present_final: float
    all_right_decoder: float  # at the decoder's own size
    both_present_decoder: float


@dataclass(frozen=True)
class SmallShapesResult:
    """Shape right for one small object, per stage and source of the embedding."""

    n: int
    decoder_true_embedding: float
    decoder_prior_sample: float
    final_true_embedding: float
    final_prior_sample: float


def _specs(family: Family, prompts: Sequence[str], seed0: int) -> list[RenderSpec]:
    d = family.defaults
    return [
        RenderSpec(
            kind="generate",
            prompt=p,
            n=1,
            seed=seed0 + i,
            steps=d.steps,
            sampler=d.sampler,
            prior_guidance=d.prior_guidance,
            decoder_guidance=d.decoder_guidance,
        )
        for i, p in enumerate(prompts)
    ]


def sample_prior(family: Family, prompts: Sequence[str], seed0: int = 0) -> Tensor:
    """(B, D) prior samples (best of the family's candidates), float32."""
    specs = _specs(family, prompts, seed0)
    embs = [e for i in range(0, len(specs), CHUNK) for e in run_prior(family, specs[i : i + CHUNK])]
    return torch.cat(embs).float()


def decode(
    family: Family, prompts: Sequence[str], embeddings: Tensor, seed0: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(decoder-size images, final images) as uint8 (S, S, 3), from given embeddings."""
    specs = _specs(family, prompts, seed0)
    low, final = [], []
    for i in range(0, len(specs), CHUNK):
        chunk = specs[i : i + CHUNK]
        embs = [embeddings[i + j : i + j + 1].float() for j in range(len(chunk))]
        low_res = run_decoder(family, chunk, embs)
        low += low_res
        final += run_upsampler(family, chunk, low_res)
    return [_uint8(x) for x in low], [_uint8(x) for x in final]


def _uint8(x: Tensor) -> np.ndarray:
    pixels = ((x[0].float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())


@torch.no_grad()
def true_embeddings(family: Family, scenes: Sequence[Scene]) -> Tensor:
    """(B, D) CLIP image embeddings of the scenes' renders, un-normalised as CLIP gives them."""
    renders = render_batch(scenes, family.clip_config.image_size)
    return family.clip.model.encode_image(clip_pixels(family.clip, renders)).float()


def _share(values: Sequence[bool]) -> float:
    return sum(values) / len(values) if values else float("nan")


def prior_binding(
    family: Family, scenes: Sequence[ProbeScene], colour_probe: BoundColourProbe
) -> PriorProbeResult:
    """The prior's samples for each canonical two-object caption, read for bound colours."""
    samples = torch.nn.functional.normalize(
        sample_prior(family, [p.caption.text for p in scenes]), dim=-1
    )
    read = colour_probe.read(samples)
    wanted = [reading_order(p.caption.facts.objects, p.scene.relation or "") for p in scenes]
    size = family.clip_config.image_size
    true = image_embeddings(family.clip, render_batch([p.scene for p in scenes], size))
    twins = [p.twins["colours"].scene for p in scenes]
    swapped = image_embeddings(family.clip, render_batch([t for t in twins if t], size))
    return PriorProbeResult(
        n=len(scenes),
        bound_right=_share([r == w for r, w in zip(read, wanted, strict=True)]),
        bound_swapped=_share([r == w[::-1] for r, w in zip(read, wanted, strict=True)]),
        prefers_true_render=_share(
            ((samples * true).sum(-1) > (samples * swapped).sum(-1)).tolist()
        ),
    )


def decoder_binding(family: Family, scenes: Sequence[ProbeScene]) -> DecoderProbeResult:
    """Decode each two-object render's own CLIP embedding with its caption; score the image."""
    true = true_embeddings(family, [p.scene for p in scenes])
    low, final = decode(family, [p.caption.text for p in scenes], true)
    facts = [p.caption.facts for p in scenes]
    at_low = [score_two(f, analyse_image(im)) for f, im in zip(facts, low, strict=True)]
    at_final = [score_two(f, analyse_image(im)) for f, im in zip(facts, final, strict=True)]
    return DecoderProbeResult(
        n=len(scenes),
        all_right_final=_share([s.all_right for s in at_final]),
        both_present_final=_share([s.both_present for s in at_final]),
        all_right_decoder=_share([s.all_right for s in at_low]),
        both_present_decoder=_share([s.both_present for s in at_low]),
    )


def small_scenes(count: int, seed: int = SMALL_SEED) -> list[Scene]:
    """One small object of each seen pair in turn, in a random cell, on a visible background."""
    rng = np.random.default_rng(seed)
    out: list[Scene] = []
    while len(out) < count:
        colour, shape = SEEN_PAIRS[len(out) % len(SEEN_PAIRS)]
        obj = place_object(rng, colour, shape, "small")
        options = [b for b in BACKGROUNDS if visible_on(colour, b)]
        if obj is not None and options:
            out.append(Scene(options[int(rng.integers(len(options)))], (obj,)))
    return out


def small_shapes(family: Family, count: int) -> SmallShapesResult:
    """Small objects, from the true embedding and from the prior, at each stage's size."""
    scenes = small_scenes(count)
    facts = [
        CaptionFacts(
            (ObjectFacts(s.objects[0].colour, s.objects[0].shape, "small", s.objects[0].position),),
            None,
            s.background,
        )
        for s in scenes
    ]
    prompts = [write_caption(f) for f in facts]
    true = true_embeddings(family, scenes)
    prior = sample_prior(family, prompts)
    low_t, final_t = decode(family, prompts, true)
    low_p, final_p = decode(family, prompts, prior)

    def shape_right(images: list[np.ndarray]) -> float:
        return _share(
            [score_single(f, analyse_image(im)).shape for f, im in zip(facts, images, strict=True)]
        )

    return SmallShapesResult(
        len(scenes),
        shape_right(low_t),
        shape_right(low_p),
        shape_right(final_t),
        shape_right(final_p),
    )
