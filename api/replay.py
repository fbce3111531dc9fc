"""A replay: a new job request from a finished job's record (POST /v1/jobs/{id}/replay).

The request is the original's kind, prompt, seed and the parameters it ran with (params_used,
so no family default can shift), its inputs copied from the original's storage into the new
job's own keys, and the original's per-stage expectation (device, machine class, dtype, batch
invariance, code and weights), against which the new job says whether its bytes can match.
"""

from __future__ import annotations

from api.embedding_request import EmbeddingRef, MixInput
from api.job_request import JobRequest
from api.uploads import UploadedImage, sniff_image
from shared.db.models import Job
from shared.errors import Conflict, NotFound
from shared.job_params import STAGES, JobParams, ParamsUsed, StepsParams, StoredMixEntry
from shared.manifest import replay_expectation, stage_runs
from shared.settings import Settings
from shared.storage.base import Storage


def _read(storage: Storage, job: Job, key: str) -> bytes:
    try:
        return storage.get_bytes(key)
    except NotFound as exc:
        raise Conflict(
            f"job {job.id} cannot be replayed: its input {key!r} is no longer "
            "stored (expired or deleted)",
            param="job_id",
        ) from exc


def _image(
    storage: Storage, job: Job, key: str | None, settings: Settings, param: str = "image"
) -> UploadedImage | None:
    if key is None:
        return None
    return sniff_image(_read(storage, job, key), param=param, limits=settings.limits)


def _mix(storage: Storage, job: Job, settings: Settings) -> tuple[MixInput, ...]:
    parts = []
    for j, raw in enumerate(job.mix or ()):
        entry = StoredMixEntry.model_validate(raw)
        embedding = None
        if entry.embedding_key is not None:
            embedding = EmbeddingRef(
                embedding_id=entry.embedding_id,
                param=f"mix.{j}.embedding_id",
                payload=_read(storage, job, entry.embedding_key),
            )
        image = _image(storage, job, entry.image_key, settings)
        parts.append(
            MixInput(weight=entry.weight, prompt=entry.prompt, embedding=embedding, image=image)
        )
    return tuple(parts)


def replay_request(job: Job, storage: Storage, settings: Settings) -> JobRequest:
    """The request that replays `job`; Conflict unless it succeeded with every stage on record."""
    runs = stage_runs(job.stage_runs)
    missing = [stage for stage in STAGES if stage not in runs]
    if job.status != "succeeded" or missing or job.params_used is None:
        raise Conflict(
            f"job {job.id} ({job.status}) has no full manifest (no record of "
            f"{', '.join(missing) or 'its parameters'}); only a job that succeeded "
            "with every stage recorded can be replayed",
            param="job_id",
        )
    used = ParamsUsed.model_validate(job.params_used)
    params = JobParams(
        kind=job.kind,  # type: ignore[arg-type]  # the API writes only the kinds
        prompt=job.prompt,
        n=job.n,
        size=used.size,
        seed=used.seed,
        sampler=used.sampler,
        steps=StepsParams.model_validate(used.steps.model_dump()),
        prior_guidance=used.prior_guidance,
        decoder_guidance=used.decoder_guidance,
    )
    embedding = None
    if job.input_embedding_key is not None:
        embedding = EmbeddingRef(
            embedding_id=job.input_embedding_id,
            param="embedding_id",
            payload=_read(storage, job, job.input_embedding_key),
        )
    return JobRequest(
        params=params,
        image=_image(storage, job, job.input_image_key, settings),
        mask=_image(storage, job, job.mask_key, settings, "mask"),
        native_size=job.native_size,
        embedding=embedding,
        mix=_mix(storage, job, settings),
        replay_of=job.id,
        replay_expect=replay_expectation(runs),
    )
