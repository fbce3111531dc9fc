"""Binding probes of a CLIP: does it tell a two-object scene from its swapped twins?

Two-object scenes whose colours and shapes differ, each with three twins built the way NegCLIP
training builds them (worker/training/hard_negatives.py): colours swapped between the objects,
shapes swapped, relation flipped (the objects trade places). Captions are canonical ("a red
circle to the left of a blue square"). A bag-of-words text tower gives a caption and its twin
a cosine near 1 and a render no preference between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from worker.shapes.captions import Caption, CaptionFacts, ObjectFacts, canonical_phrasing, phrase
from worker.shapes.rendering import render_batch
from worker.shapes.scenes import Scene, sample_scene
from worker.shapes.vocabulary import COLOURS
from worker.training.data import clip_pixels
from worker.training.hard_negatives import KINDS, HardNegative, NegativeKind, make_twin
from worker.unclip.clip_encoder import ClipEncoder

PROBE_SEED = 20_261_201  # the probe scenes; the bound-colour probe trains on PROBE_SEED + 1
_COLOUR_NAMES = tuple(COLOURS)


@dataclass(frozen=True)
class ProbeScene:
    """A two-object scene, its canonical caption and its twins (a flip may be text-only)."""

    scene: Scene
    caption: Caption
    twins: dict[NegativeKind, HardNegative]


def canonical_caption(scene: Scene) -> Caption:
    """Colours, shapes and the relation only, in the canonical wording."""
    facts = CaptionFacts(
        tuple(ObjectFacts(o.colour, o.shape) for o in scene.objects), scene.relation
    )
    phrasing = canonical_phrasing(len(scene.objects))
    return Caption(phrase(facts, phrasing), facts, phrasing)


def probe_scenes(count: int, seed: int = PROBE_SEED) -> list[ProbeScene]:
    """`count` training-split two-object scenes that have a colour twin and a shape twin."""
    rng = np.random.default_rng(seed)
    out: list[ProbeScene] = []
    while len(out) < count:
        scene = sample_scene(rng, n_objects=2)
        caption = canonical_caption(scene)
        twins = {k: make_twin(k, len(out), scene, caption) for k in KINDS}
        if all(t is not None for t in twins.values()):
            out.append(ProbeScene(scene, caption, {k: t for k, t in twins.items() if t}))
    return out


def reading_order(objects: Sequence[ObjectFacts], relation: str) -> tuple[str, str]:
    """Colours of the left (or upper) object, then of the other, from a stated relation."""
    a, b = objects[0].colour, objects[1].colour
    return (a, b) if relation in ("left of", "above") else (b, a)


def scene_order(scene: Scene) -> tuple[str, str]:
    assert scene.relation is not None
    objects = [ObjectFacts(o.colour, o.shape) for o in scene.objects]
    return reading_order(objects, scene.relation)


@torch.no_grad()
def image_embeddings(clip: ClipEncoder, images: np.ndarray, batch: int = 64) -> Tensor:
    """(B, D) unit-norm float32 CLIP embeddings of uint8 renders (B, S, S, 3)."""
    parts = [
        clip.model.encode_image(clip_pixels(clip, images[i : i + batch])).float()
        for i in range(0, len(images), batch)
    ]
    return torch.nn.functional.normalize(torch.cat(parts), dim=-1)


@torch.no_grad()
def text_embeddings(clip: ClipEncoder, texts: Sequence[str], batch: int = 64) -> Tensor:
    """(B, D) unit-norm float32 pooled text embeddings."""
    parts = [
        clip.encode_text(texts[i : i + batch]).pooled.float() for i in range(0, len(texts), batch)
    ]
    return torch.nn.functional.normalize(torch.cat(parts), dim=-1)


class BoundColourProbe:
    """A linear probe reading (left-or-upper colour, other colour) from an image embedding."""

    def __init__(self, embeddings: Tensor, scenes: Sequence[Scene], steps: int = 300) -> None:
        targets = torch.tensor([[_COLOUR_NAMES.index(c) for c in scene_order(s)] for s in scenes])
        generator = torch.Generator().manual_seed(0)
        d, k = embeddings.shape[1], len(_COLOUR_NAMES)
        self.weight = (torch.randn(d, 2 * k, generator=generator) * 0.01).requires_grad_()
        self.bias = torch.zeros(2 * k, requires_grad=True)
        optimizer = torch.optim.Adam([self.weight, self.bias], lr=0.05)
        with torch.enable_grad():
            for _ in range(steps):
                logits = self._logits(embeddings)
                loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    def _logits(self, embeddings: Tensor) -> Tensor:
        scaled = 16.0 * torch.nn.functional.normalize(embeddings.float(), dim=-1)
        return (scaled @ self.weight + self.bias).view(len(embeddings), 2, -1)  # (B, 2, K)

    @torch.no_grad()
    def read(self, embeddings: Tensor) -> list[tuple[str, str]]:
        ids = self._logits(embeddings).argmax(-1).tolist()
        return [(_COLOUR_NAMES[a], _COLOUR_NAMES[b]) for a, b in ids]


@dataclass(frozen=True)
class ClipProbeResult:
    """Per twin kind: mean cosines and how often the true member of a pair wins."""

    n: int
    text_cosine: dict[str, float]  # caption vs its twin's caption
    image_cosine: dict[str, float]  # render vs its twin's render (where the twin has one)
    image_prefers_caption: dict[str, float]  # render closer to its caption than to the twin's
    caption_prefers_image: dict[str, float]  # caption closer to its render than to the twin's
    bound_colour_probe: float  # linear probe on held renders: both colours in the right order


def _mean(x: Tensor) -> float:
    return float(x.float().mean()) if len(x) else float("nan")


def _kind_probes(
    clip: ClipEncoder,
    scenes: Sequence[ProbeScene],
    image: Tensor,
    text: Tensor,
    kind: NegativeKind,
    size: int,
) -> tuple[float, float, float, float]:
    twins = [p.twins[kind] for p in scenes]
    twin_text = text_embeddings(clip, [t.caption.text for t in twins])
    drawn = [(i, t.scene) for i, t in enumerate(twins) if t.scene is not None]
    if not drawn:  # no twin could be rendered: only the text probes have numbers
        twin_cos = _mean((text * twin_text).sum(-1))
        prefers = _mean((image * text).sum(-1) > (image * twin_text).sum(-1))
        return twin_cos, float("nan"), prefers, float("nan")
    twin_image = image_embeddings(clip, render_batch([s for _, s in drawn], size))
    rows = torch.tensor([i for i, _ in drawn], dtype=torch.long)
    return (
        _mean((text * twin_text).sum(-1)),
        _mean((image[rows] * twin_image).sum(-1)),
        _mean((image * text).sum(-1) > (image * twin_text).sum(-1)),
        _mean((text[rows] * image[rows]).sum(-1) > (text[rows] * twin_image).sum(-1)),
    )


def train_colour_probe(
    clip: ClipEncoder, count: int = 1024, seed: int = PROBE_SEED + 1
) -> BoundColourProbe:
    """The bound-colour probe, fitted on `count` renders of other two-object scenes."""
    scenes = [p.scene for p in probe_scenes(count, seed)]
    size = clip.config.image_size
    return BoundColourProbe(image_embeddings(clip, render_batch(scenes, size)), scenes)


def clip_binding(
    clip: ClipEncoder, scenes: Sequence[ProbeScene], colour_probe: BoundColourProbe
) -> ClipProbeResult:
    """Every CLIP probe over `scenes` (renders at the CLIP's own image size)."""
    size = clip.config.image_size
    image = image_embeddings(clip, render_batch([p.scene for p in scenes], size))
    text = text_embeddings(clip, [p.caption.text for p in scenes])
    results = {k: _kind_probes(clip, scenes, image, text, k, size) for k in KINDS}
    read = colour_probe.read(image)
    right = [r == scene_order(p.scene) for r, p in zip(read, scenes, strict=True)]
    return ClipProbeResult(
        n=len(scenes),
        text_cosine={k: r[0] for k, r in results.items()},
        image_cosine={k: r[1] for k, r in results.items()},
        image_prefers_caption={k: r[2] for k, r in results.items()},
        caption_prefers_image={k: r[3] for k, r in results.items()},
        bound_colour_probe=sum(right) / len(right),
    )
