"""Embedding schemas: one stored CLIP image embedding."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class EmbeddingPublic(BaseModel):
    """A CLIP image embedding (un-normalised, as CLIP gives it) and where it came from."""

    object: Literal["embedding"] = "embedding"
    id: str
    job_id: str
    source: Literal["output", "input"]
    index: int
    dim: int
    embedding: list[float]
