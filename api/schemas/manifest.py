"""The reproducibility manifest of a job: per image, what each stage ran with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.embedding_fields import MixEntryPublic, mix_public, output_embedding_ids
from shared.db.models import Job
from shared.db.models.embedding import Embedding
from shared.job_params import Kind, ParamsUsed
from shared.manifest import FamilyRecord, StageRun, stage_runs


class ImageStage(BaseModel):
    """One stage of one image: its seeds, sampling, family, code, device and batch."""

    seeds: list[int] = Field(description="the seeds of this image's generators in the stage")
    steps: int
    sampler: str
    guidance: float | None
    family: FamilyRecord
    code_version: str
    device: str
    machine: str
    dtype: str
    batch_jobs: int
    batch_rows: int
    batch_invariant: bool
    attempt: int
    worker_id: str


class ImageManifest(BaseModel):
    """What made one output image."""

    index: int
    embedding_id: str | None
    stages: dict[str, ImageStage]


class ManifestPublic(BaseModel):
    """What a job ran with, stage by stage and image by image; POST .../replay re-runs it."""

    object: Literal["manifest"] = "manifest"
    job_id: str
    kind: Kind
    status: str
    prompt: str
    n: int
    seed: int
    params_used: ParamsUsed | None
    input_embedding_id: str | None
    mix: list[MixEntryPublic] | None
    mix_seeds: list[int] = Field(description="a mix: the seed of each prompt entry's prior")
    stages: dict[str, StageRun]
    images: list[ImageManifest]
    replay_of: str | None


def _image_stage(run: StageRun, index: int) -> ImageStage:
    seeds = run.seeds[index] if index < len(run.seeds) else []
    return ImageStage(seeds=seeds, **run.model_dump(exclude={"seeds", "stage", "mix_seeds"}))


def manifest_public(job: Job, embeddings: Sequence[Embedding]) -> ManifestPublic:
    """The manifest of a job row (stages not run yet are absent)."""
    runs = stage_runs(job.stage_runs)
    ids = output_embedding_ids(embeddings)
    prior = runs.get("prior")
    recorded_input = next((e.id for e in embeddings if e.source == "input"), None)
    return ManifestPublic(
        job_id=job.id,
        kind=job.kind,  # type: ignore[arg-type]  # the API writes only the kinds
        status=job.status,
        prompt=job.prompt,
        n=job.n,
        seed=job.seed,
        params_used=None if job.params_used is None else ParamsUsed.model_validate(job.params_used),
        input_embedding_id=job.input_embedding_id or recorded_input,
        mix=mix_public(job.mix),
        mix_seeds=prior.mix_seeds if prior else [],
        stages=runs,
        images=[
            ImageManifest(
                index=i,
                embedding_id=ids.get(i),
                stages={stage: _image_stage(run, i) for stage, run in runs.items()},
            )
            for i in range(job.n)
        ],
        replay_of=job.replay_of,
    )
