"""CLIP text -> image retrieval top-1 over real renders of the shapes world."""

from __future__ import annotations

from collections.abc import Sequence

import PIL.Image
import torch

from worker.evaluation.report import RetrievalResult
from worker.shapes.rendering import render_scene
from worker.shapes.scenes import Scene
from worker.unclip.clip_encoder import ClipEncoder


def retrieval_top1(text_emb: torch.Tensor, image_emb: torch.Tensor) -> float:
    """Share of captions i whose most similar image (cosine) is image i."""
    text = torch.nn.functional.normalize(text_emb.float(), dim=-1)  # (N, D)
    image = torch.nn.functional.normalize(image_emb.float(), dim=-1)  # (N, D)
    best = (text @ image.T).argmax(dim=1)  # (N,)
    return float((best == torch.arange(len(best), device=best.device)).float().mean())


def run_retrieval(
    clip: ClipEncoder, items: Sequence[tuple[Scene, str]], batch_size: int = 64
) -> RetrievalResult:
    """Encode each scene's render and caption; retrieve each caption's image among all."""
    if not items:
        return RetrievalResult(0, None, None)
    size = int(clip.config.image_size)
    texts, images = [], []
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        texts.append(clip.encode_text([caption for _, caption in chunk]).pooled)
        renders = [PIL.Image.fromarray(render_scene(scene, size)) for scene, _ in chunk]
        images.append(clip.encode_image(renders))
    top1 = retrieval_top1(torch.cat(texts), torch.cat(images))
    return RetrievalResult(len(items), top1, 1.0 / len(items))
