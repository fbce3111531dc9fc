"""Training data: seeded shapes-world batches as tensors, CLIP pixels and caption dropout."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from torch import Tensor

from worker.shapes.dataset import SceneBatch, make_batch
from worker.unclip.clip_encoder import ClipEncoder


@dataclass(frozen=True)
class SceneSource:
    """Batches of fresh scenes; the batch of step k is drawn from a generator seeded (seed, k).

    So a resumed run sees exactly the batches it would have seen without the interruption, and
    no data-loader state has to be saved.
    """

    batch_size: int
    sizes: tuple[int, ...] = (64,)
    seed: int = 0
    split: str = "train"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.sizes:
            raise ValueError("sizes must name at least one render size, got ()")

    def batch(self, step: int) -> SceneBatch:
        rng = np.random.default_rng([self.seed, step])
        return make_batch(
            rng, self.batch_size, size=self.sizes[0], sizes=self.sizes[1:], split=self.split
        )


def to_model_range(images: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1], the diffusion models' range."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def clip_pixels(clip: ClipEncoder, images: np.ndarray) -> Tensor:
    """CLIP inputs (B, 3, S, S) for uint8 images, through the encoder's own preprocessing.

    The same transform as `ClipEncoder.encode_image`, so embeddings seen in training match the
    ones computed at render time (variations) exactly.
    """
    pils = [PIL.Image.fromarray(image) for image in images]
    pixels = torch.stack([clip.preprocess(p) for p in pils])
    return pixels.to(clip.device, clip.dtype)


def drop_captions(
    captions: Sequence[str], rate: float, rng: np.random.Generator
) -> tuple[list[str], np.ndarray]:
    """Replace each caption by "" with probability `rate` (classifier-free guidance training).

    The unconditional branch at render time encodes the empty prompt, so training drops the
    caption to exactly that. Returns the captions and the (B,) bool array of dropped rows.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"caption drop rate must be in [0, 1), got {rate!r}")
    dropped = rng.random(len(captions)) < rate
    return ["" if d else c for c, d in zip(captions, dropped, strict=True)], dropped
