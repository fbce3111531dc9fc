"""Hard negatives for CLIP training, built per batch from the scenes themselves (NegCLIP).

Yuksekgonul et al. 2023 ("When and why vision-language models behave like bags-of-words, and
what to do about it", ICLR) showed that contrastive training rarely needs word order, and fixed
it by adding, per batch, captions with swapped words as extra text negatives and similar
images as extra image negatives. Here the generator knows each scene, so both kinds are exact:
for a two-object scene, its colours swapped between the objects, its shapes swapped, or its
relation flipped (the objects trade places), written in the very wording of the true caption
(worker/shapes/captions.py: rephrase), and the swapped scene rendered. Each twin joins the batch
as one more (image, caption) pair, so a caption must beat the render of its twin and an image
must beat its twin's caption. A flipped scene that would break the generator's rules (a box
off the image, the relation no longer clear) gives a text-only negative. Twins that would show
a held-out colour-shape pair or combination are never built: training must not see them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from worker.shapes.captions import Caption, CaptionFacts, ObjectFacts, rephrase
from worker.shapes.dataset import SceneBatch
from worker.shapes.rendering import render_batch
from worker.shapes.scenes import EDGE_MARGIN, Scene, SceneObject, relation_holds
from worker.shapes.splits import is_heldout
from worker.shapes.vocabulary import INVERSE_RELATION

NegativeKind = Literal["colours", "shapes", "relation"]
KINDS: tuple[NegativeKind, ...] = ("colours", "shapes", "relation")


@dataclass(frozen=True)
class HardNegative:
    """A twin of batch row `source`: its caption, and its scene unless it is text-only."""

    kind: NegativeKind
    source: int
    caption: Caption
    scene: Scene | None


def _swap(scene: Scene, facts: CaptionFacts, attr: str) -> tuple[Scene, CaptionFacts] | None:
    a, b = scene.objects
    if getattr(a, attr) == getattr(b, attr):
        return None  # the twin would be the scene itself
    objects = (replace(a, **{attr: getattr(b, attr)}), replace(b, **{attr: getattr(a, attr)}))
    if is_heldout([(o.colour, o.shape) for o in objects]):
        return None
    fa, fb = facts.objects
    stated = (replace(fa, **{attr: getattr(fb, attr)}), replace(fb, **{attr: getattr(fa, attr)}))
    return replace(scene, objects=objects), replace(facts, objects=stated)


def _inside(obj: SceneObject) -> bool:
    x0, y0, x1, y1 = obj.box
    return min(x0, y0) >= EDGE_MARGIN and max(x1, y1) <= 1 - EDGE_MARGIN


def _flip(scene: Scene, facts: CaptionFacts) -> tuple[Scene | None, CaptionFacts]:
    """The objects trade places; a caption that placed them trades its places too."""
    assert scene.relation is not None and facts.relation is not None
    a, b = scene.objects
    moved = (replace(a, cx=b.cx, cy=b.cy), replace(b, cx=a.cx, cy=a.cy))
    relation = INVERSE_RELATION[scene.relation]
    fa, fb = facts.objects
    stated: tuple[ObjectFacts, ...] = (
        replace(fa, position=fb.position),
        replace(fb, position=fa.position),
    )
    flipped_facts = CaptionFacts(stated, INVERSE_RELATION[facts.relation], facts.background)
    valid = all(_inside(o) for o in moved) and relation_holds(*moved, relation)
    return (Scene(scene.background, moved, relation) if valid else None), flipped_facts


def make_twin(
    kind: NegativeKind, source: int, scene: Scene, caption: Caption
) -> HardNegative | None:
    """The `kind` twin of a two-object scene and its caption, or None if it cannot be built."""
    if len(scene.objects) != 2 or caption.facts.relation is None:
        return None
    if kind == "relation":
        flipped, facts = _flip(scene, caption.facts)
        return HardNegative(kind, source, rephrase(caption, facts), flipped)
    swapped = _swap(scene, caption.facts, "colour" if kind == "colours" else "shape")
    if swapped is None:
        return None
    return HardNegative(kind, source, rephrase(caption, swapped[1]), swapped[0])


def hard_negatives(
    batch: SceneBatch,
    rng: np.random.Generator,
    *,
    per_scene: int = 1,
    kinds: tuple[NegativeKind, ...] = KINDS,
) -> list[HardNegative]:
    """Up to `per_scene` twins of each two-object scene, of kinds tried in a random order."""
    if not batch.described:
        raise ValueError("hard negatives need the batch's caption facts (SceneBatch.described)")
    out = []
    for i, (scene, caption) in enumerate(zip(batch.scenes, batch.described, strict=True)):
        if len(scene.objects) != 2:
            continue
        order = [kinds[int(k)] for k in rng.permutation(len(kinds))]
        twins = (make_twin(kind, i, scene, caption) for kind in order)
        out += [t for t in twins if t is not None][:per_scene]
    return out


@dataclass(frozen=True)
class TwinBatch:
    """A batch with its twins: rows past the batch are twins; texts past the images are
    text-only negatives."""

    images: np.ndarray  # (N, S, S, 3) uint8: the batch's renders, then its twins'
    texts: list[str]  # N captions of those images, then the text-only negatives
    scenes: list[Scene]  # N


def with_twins(batch: SceneBatch, rng: np.random.Generator) -> TwinBatch:
    """`batch` joined by one twin of each two-object scene (hard_negatives), rendered."""
    twins = hard_negatives(batch, rng)
    drawn = [(t, t.scene) for t in twins if t.scene is not None]
    images = batch.images
    if drawn:
        images = np.concatenate([images, render_batch([s for _, s in drawn], images.shape[1])])
    text_only = [t.caption.text for t in twins if t.scene is None]
    texts = [*batch.captions, *(t.caption.text for t, _ in drawn), *text_only]
    return TwinBatch(images, texts, [*batch.scenes, *(s for _, s in drawn)])


def negclip_loss(image_f: Tensor, text_f: Tensor, scale: Tensor) -> Tensor:
    """Symmetric contrastive loss where text rows past the images are extra negatives.

    image_f (N, D) and text_f (N + M, D) are unit-norm; row i of each is a true pair. Images
    pick among all N + M captions, captions among the N images (NegCLIP's objective).
    """
    n = image_f.shape[0]
    assert text_f.shape[0] >= n, "every image needs its caption"
    labels = torch.arange(n, device=image_f.device)
    per_image = scale * image_f @ text_f.T  # (N, N + M)
    per_text = scale * text_f[:n] @ image_f.T  # (N, N)
    ce = torch.nn.functional.cross_entropy
    return 0.5 * (ce(per_image, labels) + ce(per_text, labels))
