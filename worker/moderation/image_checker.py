"""Image check: CLIP image embeddings against the policy's text concepts, per-concept thresholds.

The Stable Diffusion safety checker's method (cosine similarity of the image embedding to
concept embeddings, each with its own threshold), with the concepts written as text in the
policy and embedded by the family's own CLIP text tower, so image and concepts share a space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import PIL.Image
import torch

from shared.moderation.policy import ImageConcept, Policy
from shared.moderation.verdict import Decision, Stage, Verdict, strictest
from worker.moderation.edit_regions import edit_region

CHECKER_VERSION = "image/2"
DEFAULT_INPUT_SIZE = 224


class ClipLike(Protocol):
    """What the checker needs of worker.unclip.clip_encoder.ClipEncoder."""

    def encode_image(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor: ...

    def encode_text(self, prompts: Sequence[str]) -> object: ...


@dataclass(frozen=True)
class ActiveConcept:
    """A policy concept with the threshold that applies to this CLIP."""

    concept: ImageConcept
    threshold: float


def active_concepts(policy: Policy, clip_name: str) -> list[ActiveConcept]:
    """Concepts calibrated for `clip_name` (or carrying a "default" threshold)."""
    found = []
    for concept in policy.image_concepts:
        threshold = concept.thresholds.get(clip_name, concept.thresholds.get("default"))
        if threshold is not None:
            found.append(ActiveConcept(concept, threshold))
    return found


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


class ImageChecker:
    """Embeds the concepts once; `check(images)` gives one verdict per image."""

    def __init__(self, policy: Policy, clip: ClipLike, clip_name: str) -> None:
        self.policy = policy
        self.clip = clip
        self.clip_name = clip_name
        self.concepts = active_concepts(policy, clip_name)
        self.embeddings: torch.Tensor | None = None  # (C, D)
        if self.concepts:
            encoded = clip.encode_text([a.concept.text for a in self.concepts])
            pooled = getattr(encoded, "pooled", encoded)
            assert isinstance(pooled, torch.Tensor)
            self.embeddings = _unit(pooled).cpu()

    @torch.no_grad()
    def similarities(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor:
        """(B, C) cosine similarity of each image to each active concept."""
        if self.embeddings is None:
            raise ValueError(f"no image concept of the policy is calibrated for {self.clip_name}")
        return _unit(self.clip.encode_image(list(images))).cpu() @ self.embeddings.T

    @property
    def input_size(self) -> int:
        """The side of the images the CLIP sees (its config's image_size)."""
        config = getattr(self.clip, "config", None)
        return int(getattr(config, "image_size", DEFAULT_INPUT_SIZE) or DEFAULT_INPUT_SIZE)

    def check(self, images: Sequence[PIL.Image.Image], *, stage: Stage) -> list[Verdict]:
        """Flag an image for every concept whose similarity reaches that concept's threshold."""
        if not images:
            return []
        if self.embeddings is None:
            return [self._uncalibrated(stage, index) for index in range(len(images))]
        sims = self.similarities(images)
        return [self._verdict(stage, index, row) for index, row in enumerate(sims)]

    def check_embeddings(self, embeddings: torch.Tensor, *, stage: Stage) -> list[Verdict]:
        """As `check`, for CLIP image embeddings (B, D) that no image was encoded to (a mix's
        spherical interpolation): the same concepts and thresholds, region "embedding"."""
        if embeddings.shape[0] == 0:
            return []
        if self.embeddings is None:
            verdicts = [self._uncalibrated(stage, i) for i in range(embeddings.shape[0])]
        else:
            sims = _unit(embeddings).cpu() @ self.embeddings.T
            verdicts = [self._verdict(stage, i, row) for i, row in enumerate(sims)]
        return [replace(v, detail={**v.detail, "region": "embedding"}) for v in verdicts]

    def check_edit(
        self,
        input_image: PIL.Image.Image,
        mask: PIL.Image.Image | None,
        outputs: Sequence[PIL.Image.Image],
    ) -> list[Verdict]:
        """For each edit output: its repainted region's crop and its change from the input.

        Stage `edit_region`; each verdict's detail names the region ("mask_crop" or
        "mask_diff"), its box in output pixels and the size it was scored at.
        """
        regions: list[tuple[int, str, tuple[int, int, int, int], PIL.Image.Image]] = []
        for index, output in enumerate(outputs):
            region = edit_region(input_image, mask, output, self.input_size)
            if region is not None:
                regions.append((index, "mask_crop", region.box, region.crop))
                regions.append((index, "mask_diff", region.box, region.diff))
        verdicts = self.check([image for *_, image in regions], stage="edit_region")
        return [
            self._with_region(v, index, name, box)
            for v, (index, name, box, _) in zip(verdicts, regions, strict=True)
        ]

    def _with_region(
        self, verdict: Verdict, index: int, region: str, box: tuple[int, int, int, int]
    ) -> Verdict:
        detail: dict[str, Any] = {
            **verdict.detail,
            "image_index": index,
            "region": region,
            "box": list(box),
            "size": self.input_size,
        }
        return replace(verdict, detail=detail)

    def _verdict(self, stage: Stage, index: int, sims: torch.Tensor) -> Verdict:
        scores = {
            a.concept.text: round(float(s), 6) for a, s in zip(self.concepts, sims, strict=True)
        }
        thresholds = {a.concept.text: a.threshold for a in self.concepts}
        fired: dict[str, list[str]] = {}
        for active, sim in zip(self.concepts, sims, strict=True):
            if float(sim) >= active.threshold:
                fired.setdefault(active.concept.category, []).append(active.concept.text)
        actions = [self.policy.categories[c].action for c in fired]
        flagged = tuple(c for c in fired if self.policy.categories[c].action != Decision.ALLOW)
        return Verdict(
            stage=stage,
            checker="image",
            checker_version=f"{CHECKER_VERSION}+clip:{self.clip_name}",
            policy_version=self.policy.version,
            decision=strictest(actions),
            scores=scores,
            thresholds=thresholds,
            flagged=flagged,
            matched_terms={c: tuple(texts) for c, texts in fired.items()},
            detail={
                "image_index": index,
                "clip": self.clip_name,
                "calibrated": True,
                "region": "whole",
            },
        )

    def _uncalibrated(self, stage: Stage, index: int) -> Verdict:
        return Verdict(
            stage=stage,
            checker="image",
            checker_version=f"{CHECKER_VERSION}+clip:{self.clip_name}",
            policy_version=self.policy.version,
            decision=self.policy.image_when_uncalibrated,
            scores={},
            thresholds={},
            detail={
                "image_index": index,
                "clip": self.clip_name,
                "calibrated": False,
                "region": "whole",
            },
        )
