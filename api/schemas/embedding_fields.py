"""The job object's embedding-level and replay fields (issue 15), built from the row.

Images carry the id of the embedding each was decoded from; a variation shows its input's
embedding id, a mix its entries, a replay its original and whether its bytes can match.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.db.models import Job
from shared.db.models.embedding import Embedding
from shared.job_params import StoredMixEntry
from shared.manifest import reproducibility


class MixEntryPublic(BaseModel):
    """One entry of a mix job: its weight and what it was (an image entry shows no pixels)."""

    source: Literal["prompt", "embedding", "image"]
    weight: float
    prompt: str | None = None
    embedding_id: str | None = None


class EmbeddingFields(BaseModel):
    """The fields JobPublic adds for the embedding-level API and replays."""

    input_embedding_id: str | None = Field(
        default=None, description="a variation's input: the embedding it varies"
    )
    mix: list[MixEntryPublic] | None = None
    replay_of: str | None = Field(default=None, description="the job this one replays")
    reproducible: bool | None = Field(
        default=None,
        description="a replay: true once every stage ran as the original's did (same bytes), "
        "false with reproducible_reason when that cannot hold, null while unknown",
    )
    reproducible_reason: str | None = None


def mix_public(raw: list[dict[str, Any]] | None) -> list[MixEntryPublic] | None:
    if raw is None:
        return None
    entries = [StoredMixEntry.model_validate(item) for item in raw]
    return [
        MixEntryPublic(
            source="prompt" if e.prompt else "embedding" if e.embedding_key else "image",
            weight=e.weight,
            prompt=e.prompt,
            embedding_id=e.embedding_id,
        )
        for e in entries
    ]


def output_embedding_ids(embeddings: Sequence[Embedding]) -> dict[int, str]:
    """Image index -> the id of the embedding it was decoded from."""
    return {e.index: e.id for e in embeddings if e.source == "output"}


def embedding_fields(job: Job, embeddings: Sequence[Embedding]) -> dict[str, Any]:
    """JobPublic's embedding and replay fields for this row (as keyword arguments)."""
    recorded_input = next((e.id for e in embeddings if e.source == "input"), None)
    reproducible, reason = reproducibility(job.replay_expect, job.stage_runs)
    fields = EmbeddingFields(
        input_embedding_id=job.input_embedding_id or recorded_input,
        mix=mix_public(job.mix),
        replay_of=job.replay_of,
        reproducible=reproducible,
        reproducible_reason=reason,
    )
    return dict(fields)
